package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestExplainBesideRunningGateway: with the embedded store in use by a
// running gateway, `aupguard explain` answers through the gateway's admin
// API, as a dry run (a customer with a daily quota of 1 is explained five
// times and still accepted); -local says why it cannot; the endpoint
// refuses what a hostile caller sends (no token, another method, an
// oversized message, an unknown customer, a bad address, a flood); and with the
// gateway stopped explain runs on the store's files.
func TestExplainBesideRunningGateway(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	dir := t.TempDir()
	milterAddr, adminAddr := freeAddr(t), freeAddr(t)
	cfgPath := filepath.Join(dir, "aupguard.yaml")
	cfg := fmt.Sprintf(`milter: {listen: "inet:%s"}
admin: {listen: %q, token_file: %q}
store: {path: %q}
optout: {unsubscribe: {listen: "off"}}
chain: [sender_identity, rate_limit]
customers:
  - id: acme
    networks: [127.0.0.0/16]
    domains: [acme.example]
    limits: {messages_per_day: 1}
`, milterAddr, adminAddr, filepath.Join(dir, "state", "admin.token"), filepath.Join(dir, "state"))
	os.WriteFile(cfgPath, []byte(cfg), 0o600)
	msgPath := filepath.Join(dir, "m.eml")
	os.WriteFile(msgPath, []byte("From: <a@acme.example>\r\nTo: <b@example.org>\r\nSubject: x\r\n\r\nhi\r\n"), 0o600)
	srv := startServe(t, bin, cfgPath, milterAddr)
	waitFor(t, "the admin token", func() bool { _, err := os.Stat(filepath.Join(dir, "state", "admin.token")); return err == nil })
	explain := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := runMain(append([]string{"explain", "-config", cfgPath, "-customer", "acme"}, append(args, msgPath)...), &out, &errb)
		return code, out.String(), errb.String()
	}
	for i := 0; i < 5; i++ {
		code, out, errOut := explain()
		if code != 0 || !strings.Contains(out, "verdict: accept") {
			t.Fatalf("explain %d: exit %d\n%s%s", i, code, out, errOut)
		}
	}
	if code := sendMessage(t, milterAddr, 1); code != 250 {
		t.Fatalf("the real message after five explains: %d, want 250 (explain counted)", code)
	}
	if code, out, _ := explain(); code != 0 || !strings.Contains(out, "quota_exceeded") {
		t.Fatalf("explain after the quota is used: %d\n%s", code, out)
	}
	if code, _, errOut := explain("-local"); code != 1 || !strings.Contains(errOut, "in use by it: drop -local") {
		t.Fatalf("-local beside the gateway: exit %d %q", code, errOut)
	}

	tok, _ := os.ReadFile(filepath.Join(dir, "state", "admin.token"))
	var callType func(method, query, ctype string, body io.Reader, auth bool) int
	call := func(method, query string, body io.Reader, auth bool) int {
		return callType(method, query, "message/rfc822", body, auth)
	}
	callType = func(method, query, ctype string, body io.Reader, auth bool) int {
		req, _ := http.NewRequest(method, "http://"+adminAddr+"/api/explain?"+query, body)
		req.Header.Set("Content-Type", ctype)
		if auth {
			req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	msg := "From: <a@acme.example>\r\n\r\nhi\r\n"
	for _, tc := range []struct {
		name, method, query string
		body                io.Reader
		auth                bool
		want                int
	}{
		{"no token", "POST", "customer=acme", strings.NewReader(msg), false, 401},
		{"GET", "GET", "customer=acme", nil, true, 405},
		{"no customer", "POST", "", strings.NewReader(msg), true, 400},
		{"unknown customer", "POST", "customer=nobody", strings.NewReader(msg), true, 404},
		{"bad client", "POST", "customer=acme&client=not-an-ip", strings.NewReader(msg), true, 400},
		{"oversized message", "POST", "customer=acme", io.MultiReader(strings.NewReader("From: <a@acme.example>\r\n\r\n"), io.LimitReader(zeros{}, 64<<20+1)), true, 413},
		{"a good one", "POST", "customer=acme&rcpt=b@example.org", strings.NewReader(msg), true, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := call(tc.method, tc.query, tc.body, tc.auth); got != tc.want {
				t.Fatalf("%s /api/explain?%s: %d, want %d", tc.method, tc.query, got, tc.want)
			}
		})
	}

	// What a cross-site form or a no-cors fetch can send is refused.
	if got := callType("POST", "customer=acme", "text/plain", strings.NewReader(msg), true); got != http.StatusUnsupportedMediaType {
		t.Errorf("text/plain body: %d, want 415", got)
	}

	// A flood: four explains whose messages are still arriving hold every
	// slot; the next one is told to come back (429), the gateway keeps
	// deciding mail, and the slots free when the four end.
	var pipes []*io.PipeWriter
	results := make(chan int, 4)
	for i := 0; i < 4; i++ {
		pr, pw := io.Pipe()
		pipes = append(pipes, pw)
		go func() { results <- call("POST", "customer=acme", pr, true) }()
		pw.Write([]byte("From: <a@acme.example>\r\n"))
	}
	waitFor(t, "a 429 while four explains are under way", func() bool {
		return call("POST", "customer=acme", strings.NewReader(msg), true) == http.StatusTooManyRequests
	})
	if code := sendMessage(t, milterAddr, 2); code/100 != 4 {
		t.Fatalf("mail during the flood: %d, want the quota's 4xx", code)
	}
	for _, pw := range pipes {
		pw.Write([]byte("\r\nhi\r\n"))
		pw.Close()
	}
	for i := 0; i < 4; i++ {
		if got := <-results; got != 200 {
			t.Errorf("a held explain ended with %d", got)
		}
	}
	if got := call("POST", "customer=acme", strings.NewReader(msg), true); got != 200 {
		t.Fatalf("after the flood: %d", got)
	}

	// The gateway stops: explain runs on the store's files here.
	srv.cmd.Process.Signal(syscall.SIGTERM)
	<-srv.done
	code, out, errOut := explain()
	if code != 0 || !strings.Contains(errOut, "explaining with the store's files here") || !strings.Contains(out, "quota_exceeded") {
		t.Fatalf("explain without a gateway: exit %d\n%s%s", code, out, errOut)
	}
}

// zeros reads 'a's forever.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'a'
	}
	return len(p), nil
}
