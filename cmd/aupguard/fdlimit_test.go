package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aupguard/aupguard/internal/testkit/testenv"
)

// openFDs counts the descriptors process pid has open.
func openFDs(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// TestServeSurvivesDescriptorFloodOfThePublicPort: `aupguard serve` runs
// with a descriptor limit of 1024 (soft 512 at exec) behind a real
// Postfix, its unsubscribe endpoint configured with caps far above what
// the limit can hold. 3,000 idle connections from 100 client addresses
// flood the public port; the gateway holds at most its (lowered) cap,
// closes the rest at once, never runs out of descriptors, and the milter
// keeps serving mail through Postfix (250). After the flood the endpoint
// answers again and mail still goes through; the process never exits.
func TestServeSurvivesDescriptorFloodOfThePublicPort(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary behind Postfix")
	}
	testenv.Need(t, "prlimit")
	bin := buildBinary(t)
	dir := t.TempDir()
	free := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().String()
	}
	milterAddr, unsubAddr, adminAddr := free(), free(), free()
	token := filepath.Join(dir, "token")
	if err := os.WriteFile(token, []byte("0123456789abcdef0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "aupguard.yaml")
	cfg := fmt.Sprintf(`milter: {listen: "inet:%s"}
log: {format: text}
store: {backend: memory, path: %q}
admin: {listen: %q, token_file: %q}
optout:
  unsubscribe: {listen: %q, max_connections: 50000, max_connections_per_client: 40}
chain: [sender_identity]
customers:
  - id: acme
    networks: [127.0.0.0/16]
    domains: [acme.example]
`, milterAddr, filepath.Join(dir, "state"), adminAddr, token, unsubAddr)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	prlimit, _ := exec.LookPath("prlimit")
	s := &served{cmd: exec.Command(prlimit, "--nofile=512:1024", bin, "serve", "-config", cfgPath), stderr: &syncBuf{}, done: make(chan struct{})}
	s.cmd.Stderr = s.stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.err = s.cmd.Wait(); close(s.done) }()
	t.Cleanup(func() { _ = s.cmd.Process.Kill(); <-s.done })
	waitFor(t, "the milter to listen", func() bool {
		c, err := net.Dial("tcp", milterAddr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	pid := s.cmd.Process.Pid // prlimit execs the binary: same process

	// The budget: the soft limit raised to the hard one, the cap lowered.
	budget := regexp.MustCompile(`descriptor budget" .*soft=(\d+) hard=(\d+) .*unsubscribe_max_connections=(\d+) unsubscribe_max_connections_per_client=(\d+)`).FindStringSubmatch(s.stderr.String())
	if budget == nil {
		t.Fatalf("no descriptor budget line:\n%s", s.stderr.String())
	}
	capMax, _ := strconv.Atoi(budget[3])
	if budget[1] != "1024" || budget[2] != "1024" || capMax <= 0 || capMax >= 1024-512 || budget[4] != "40" {
		t.Fatalf("budget soft=%s hard=%s cap=%d per_client=%s; want the soft limit raised to 1024 and the cap lowered below 512:\n%s", budget[1], budget[2], capMax, budget[4], s.stderr.String())
	}
	if !strings.Contains(s.stderr.String(), "listener caps lowered") {
		t.Errorf("the lowered cap was not logged as a warning:\n%s", s.stderr.String())
	}
	t.Logf("descriptor budget: %s", budget[0])

	sink := testenv.StartSink(t)
	pf := testenv.StartPostfix(t, testenv.PostfixOptions{MilterAddr: "inet:" + milterAddr, RelayTo: sink.Addr()})
	send := func(i int) *testenv.SMTPResult {
		t.Helper()
		r, err := testenv.SendMail(pf.SMTPAddr(), testenv.SendOptions{LocalAddr: "127.0.0.5", From: "a@acme.example", To: []string{"r@example.org"},
			Data:    []byte(fmt.Sprintf("From: a@acme.example\r\nTo: r@example.org\r\nSubject: m%d\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <%d.%d@test>\r\n\r\nHello.\r\n", i, i, time.Now().UnixNano())),
			Timeout: 20 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := send(0); !r.Delivered() {
		t.Fatalf("before the flood: want 250, got\n%s", r)
	}
	base := openFDs(t, pid)

	// The flood: 100 addresses x 30 idle connections, never a request.
	var flood []net.Conn
	for a := 1; a <= 100; a++ {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 1, byte(a))}, Timeout: 5 * time.Second}
		for range 30 {
			c, err := d.Dial("tcp", unsubAddr)
			if err != nil {
				t.Fatalf("flood dial %d: %v", len(flood), err)
			}
			flood = append(flood, c)
		}
	}
	defer func() {
		for _, c := range flood {
			c.Close()
		}
	}()
	waitFor(t, "the cap to be reached", func() bool {
		return strings.Contains(s.stderr.String(), "connection refused: over the listener's cap")
	})
	during := openFDs(t, pid)
	t.Logf("gateway descriptors: %d before the flood, %d during (limit 1024, cap %d, %d flood connections)", base, during, capMax, len(flood))
	if during >= 1024 || during > base+capMax+8 {
		t.Fatalf("%d descriptors open during the flood (before %d, cap %d): the cap did not hold", during, base, capMax)
	}
	for i := 1; i <= 3; i++ {
		if r := send(i); !r.Delivered() {
			t.Fatalf("during the flood, message %d: want 250, got\n%s\ngateway log:\n%s", i, r, tail(s.stderr.String(), 20))
		}
	}
	if strings.Contains(s.stderr.String(), "too many open files") {
		t.Errorf("the gateway ran out of descriptors:\n%s", tail(s.stderr.String(), 20))
	}

	// The flood stops: the endpoint answers, mail goes on.
	for _, c := range flood {
		c.Close()
	}
	flood = nil
	var status int
	waitFor(t, "the unsubscribe endpoint to answer", func() bool {
		resp, err := http.Get("http://" + unsubAddr + "/u/not-a-token")
		if err != nil {
			return false
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		status = resp.StatusCode
		return true
	})
	if status >= 500 {
		t.Errorf("after the flood the endpoint answered %d", status)
	}
	// The metrics say what happened.
	req, _ := http.NewRequest("GET", "http://"+adminAddr+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer 0123456789abcdef0123456789abcdef")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	refused := regexp.MustCompile(`aupguard_listener_connections_refused_total\{listener="unsubscribe"\} (\d+)`).FindSubmatch(metrics)
	if refused == nil || string(refused[1]) == "0" || !strings.Contains(string(metrics), `aupguard_listener_accept_failures_total{listener="milter"} 0`) {
		t.Errorf("metrics: refused %q; want the flood counted and no failed milter accept:\n%s", refused, metrics)
	} else {
		t.Logf("unsubscribe connections refused over the cap: %s of %d", refused[1], 3000)
	}
	if r := send(4); !r.Delivered() {
		t.Fatalf("after the flood: want 250, got\n%s", r)
	}
	select {
	case <-s.done:
		t.Fatalf("the gateway exited: %v\n%s", s.err, s.stderr.String())
	default:
	}
	if _, err := sink.WaitFor(5, 30*time.Second); err != nil {
		t.Errorf("the sink did not get the 5 messages: %v", err)
	}
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
