package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aupguard/aupguard/internal/testkit/testenv"
)

// lockedBuf is a goroutine-safe buffer for a child's output.
type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *lockedBuf) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// servedGateway is one `aupguard serve` process.
type servedGateway struct {
	cfg, milter, admin string
	out                *lockedBuf
}

func startServe(t *testing.T, bin, dir, name, redisAddr, token string) *servedGateway {
	t.Helper()
	g := &servedGateway{milter: freeAddr(t), admin: freeAddr(t), out: &lockedBuf{}}
	g.cfg = filepath.Join(dir, name+".yaml")
	cfg := fmt.Sprintf(`milter: {listen: "inet:%s"}
log: {format: json}
store: {backend: redis, redis: {addrs: [%q], key_prefix: "dirtest:"}}
secret_file: %s
admin: {listen: %q, token_file: %q}
optout: {unsubscribe: {listen: "off"}}
chain: [sender_identity, rate_limit]
customers:
  - id: bootstrap
    networks: [127.0.0.40/32]
    domains: [bootstrap.example]
`, g.milter, redisAddr, filepath.Join(dir, "secret"), g.admin, token)
	if err := os.WriteFile(g.cfg, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", "-config", g.cfg)
	cmd.Stdout, cmd.Stderr = g.out, g.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
		}
		if t.Failed() {
			t.Logf("%s log:\n%s", name, g.out.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if c, err := net.Dial("tcp", g.milter); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not listen:\n%s", name, g.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return g
}

// TestDirectoryTwoGateways is the issue's "done when": two `aupguard
// serve` processes share one Redis; a customer added with the command on
// the first is applied by the second, behind a real Postfix, with its
// limits, within about a second (measured, logged), without reload.
func TestDirectoryTwoGateways(t *testing.T) {
	testenv.Need(t, "postfix", "redis-server")
	dir := t.TempDir()
	bin := filepath.Join(dir, "aupguard")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/aupguard").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	rds := testenv.StartRedis(t, testenv.RedisOptions{})
	if err := os.WriteFile(filepath.Join(dir, "secret"), bytes.Repeat([]byte("s"), 32), 0o600); err != nil {
		t.Fatal(err)
	}
	token := filepath.Join(dir, "token")
	if err := os.WriteFile(token, []byte("directory-test-token-0123456789"), 0o600); err != nil {
		t.Fatal(err)
	}
	a := startServe(t, bin, dir, "gateway-a", rds.Addr(), token)
	b := startServe(t, bin, dir, "gateway-b", rds.Addr(), token)
	sink := testenv.StartSink(t)
	pf := testenv.StartPostfix(t, testenv.PostfixOptions{MilterAddr: "inet:" + b.milter, RelayTo: sink.Addr()})

	send := func(i int) *testenv.SMTPResult {
		r, err := testenv.SendMail(pf.SMTPAddr(), testenv.SendOptions{LocalAddr: "127.0.0.41", From: "news@newco.example",
			To: []string{"a@example.org"}, Data: rlMsg("news@newco.example", "a@example.org", i)})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	// Before: 127.0.0.41 is nobody's, gateway B refuses it (no open relay).
	if r := send(0); r.Delivered() || r.Mail == nil || r.Mail.Code != 550 {
		t.Fatalf("unknown client: want 550 at MAIL, got\n%s", r)
	}

	// The command, with gateway A's config, adds the customer.
	out, err := exec.Command(bin, "customer", "add", "newco", "-config", a.cfg,
		"-set", "networks=[127.0.0.41/32]", "-set", "domains=[newco.example]",
		"-set", "limits.messages_per_minute=2", "-set", "name=New Co").CombinedOutput()
	if err != nil {
		t.Fatalf("customer add: %v\n%s", err, out)
	}
	added := time.Now()
	// A bad definition is refused with its field named, and not written.
	bad, err := exec.Command(bin, "customer", "add", "broken", "-config", a.cfg,
		"-set", "networks=[127.0.0.42/8]", "-set", "domains=[broken.example]").CombinedOutput()
	if err == nil || !strings.Contains(string(bad), "networks[0]") || !strings.Contains(string(bad), "host bits set") {
		t.Fatalf("bad definition: want an error naming networks[0], got %v\n%s", err, bad)
	}

	// Gateway B applies it without reload.
	client := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(20 * time.Second)
	for {
		req, _ := http.NewRequest("GET", "http://"+b.admin+"/api/customers/newco", nil)
		req.Header.Set("Authorization", "Bearer directory-test-token-0123456789")
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("gateway B never applied the new customer:\n%s", b.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("gateway B applied the customer added on A after %v", time.Since(added).Round(time.Millisecond))
	if !strings.Contains(b.out.String(), `"directory_applied"`) || strings.Contains(b.out.String(), "config reloaded") {
		t.Fatalf("B did not apply the directory change by itself:\n%s", b.out.String())
	}
	// B updated its running identification index for the one changed
	// customer (the messages below are identified through it).
	if !regexp.MustCompile(`"directory_applied".*"changed":1,"incremental":true`).MatchString(b.out.String()) {
		t.Fatalf("B did not update its index incrementally:\n%s", b.out.String())
	}

	req, _ := http.NewRequest("GET", "http://"+b.admin+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer directory-test-token-0123456789")
	if resp, err := client.Do(req); err != nil {
		t.Fatal(err)
	} else {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(body), "aupguard_directory_changes_applied_total 1") || !strings.Contains(string(body), "aupguard_directory_customers 2") {
			t.Errorf("B's metrics lack the applied change:\n%s", body)
		}
	}

	// Its limits apply: two a minute go, the third gets 451 4.7.1.
	for i := 1; i <= 2; i++ {
		if r := send(i); !r.Delivered() {
			t.Fatalf("message %d of the new customer refused:\n%s", i, r)
		}
	}
	if r := send(3); r.Delivered() || r.Mail == nil || r.Mail.Code != 451 || !strings.Contains(r.Mail.Text, "messages_per_minute") {
		t.Fatalf("third message: want 451 naming messages_per_minute, got\n%s", r)
	}

	// A change of limit on B (through its admin API) reaches A's store view:
	// the change log records both, with their interface.
	req, _ = http.NewRequest("PATCH", "http://"+b.admin+"/api/customers/newco", strings.NewReader(`{"limits": {"messages_per_minute": 100}}`))
	req.Header.Set("Authorization", "Bearer directory-test-token-0123456789")
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("PATCH: %v %v", err, resp)
	}
	resp.Body.Close()
	hist, err := exec.Command(bin, "customer", "history", "newco", "-json", "-config", a.cfg).Output()
	if err != nil {
		t.Fatalf("history: %v", err)
	}
	var h struct {
		Changes []struct {
			Op, Via string
			Fields  []string
		}
	}
	if err := json.Unmarshal(hist, &h); err != nil || len(h.Changes) != 2 {
		t.Fatalf("history: %v\n%s", err, hist)
	}
	if h.Changes[0].Op != "set" || h.Changes[0].Via != "api" || strings.Join(h.Changes[0].Fields, ",") != "limits" ||
		h.Changes[1].Op != "add" || h.Changes[1].Via != "cli" {
		t.Fatalf("history: %+v", h.Changes)
	}
	_ = a
}
