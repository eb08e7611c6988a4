package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aupguard/aupguard/internal/testkit/gwtest"
	"github.com/aupguard/aupguard/internal/testkit/testenv"
)

// TestAdminThroughPostfix: a message refused through Postfix is found by
// the reference id the client saw, the metrics count it, the dashboard
// renders, and every protected endpoint wants the token.
func TestAdminThroughPostfix(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	os.WriteFile(tokenFile, []byte("s3cr3t-admin-token-0123456789\n"), 0o600)
	cfg := fmt.Sprintf(`
log: {format: json}
store: {path: %q}
admin: {token_file: %q}
chain: [sender_identity]
customers:
  - id: webhost
    networks: [127.0.0.5/32]
    domains: [webhost.example]
`, dir, tokenFile)
	env := gwtest.Start(t, gwtest.Options{Config: cfg})
	base := "http://" + env.Daemon.ServiceAddr("admin").String()

	r := env.Send(testenv.SendOptions{LocalAddr: "127.0.0.5", From: "app@webhost.example", To: []string{"bob@example.org"},
		Data: msg("ceo@bank.example", "bob@example.org", "forged")})
	if r.EndOfData == nil || r.EndOfData.Code != 550 {
		t.Fatalf("forged From not refused: %s", r)
	}
	text := r.EndOfData.Text
	i := strings.Index(text, "(ref ")
	if i < 0 {
		t.Fatalf("no reference in %q", text)
	}
	ref := strings.TrimSuffix(text[i+5:], ")")

	get := func(path, token string) (int, string) {
		req, _ := http.NewRequest("GET", base+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	const token = "s3cr3t-admin-token-0123456789"
	if code, _ := get("/healthz", ""); code != 200 {
		t.Fatalf("/healthz %d", code)
	}
	for _, p := range []string{"/metrics", "/api/events/" + ref, "/", "/api/optouts?list=webhost", "/readyz"} {
		if code, _ := get(p, ""); code != 401 {
			t.Errorf("%s without token: %d, want 401", p, code)
		}
		if code, _ := get(p, "wrong"); code != 401 {
			t.Errorf("%s with a wrong token: %d, want 401", p, code)
		}
	}
	// The event is recorded asynchronously.
	var body string
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, b := get("/api/events/"+ref, token)
		if code == 200 {
			body = b
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("event %s not found: %d %s", ref, code, b)
		}
		time.Sleep(100 * time.Millisecond)
	}
	var evs any
	if err := json.Unmarshal([]byte(body), &evs); err != nil {
		t.Fatalf("events JSON: %v\n%s", err, body)
	}
	for _, want := range []string{ref, "webhost", "from_domain_not_owned", "reject"} {
		if !strings.Contains(body, want) {
			t.Errorf("event lacks %q: %s", want, body)
		}
	}
	code, m := get("/metrics", token)
	if code != 200 || !strings.Contains(m, `check="sender_identity"`) {
		t.Errorf("metrics %d lack the decision:\n%.2000s", code, m)
	}
	if code, page := get("/", token); code != 200 || !strings.Contains(page, "<svg") {
		t.Errorf("dashboard %d without charts", code)
	}
	if code, _ := get("/readyz", token); code != 200 {
		t.Errorf("/readyz %d", code)
	}
	if strings.Contains(env.Log(), token) {
		t.Error("the admin token appears in the log")
	}
}
