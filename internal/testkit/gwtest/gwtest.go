// Package gwtest starts the whole path for end-to-end tests: the real
// gateway (package daemon, in process, the code `aupguard serve` runs), a
// private Postfix instance whose smtpd_milters point at it, and an SMTP sink
// that Postfix relays to. Tests send mail through Postfix and assert what
// the client saw and what reached the sink.
package gwtest

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/aupguard/aupguard/internal/engine/daemon"
	"github.com/aupguard/aupguard/internal/testkit/testenv"
)

// Options describe the environment.
type Options struct {
	// Config is the gateway's YAML config; milter.listen is set by Start.
	Config string
	// Listen is the gateway's milter.listen (default inet:127.0.0.1:0, a
	// free loopback port); a unix: path must be reachable by the postfix
	// user. Postfix is pointed at it.
	Listen string
	// SASLUsers are created on Postfix's submission listener.
	SASLUsers map[string]string
	// MilterDefaultAction is Postfix's milter_default_action (default tempfail).
	MilterDefaultAction string
	// ExtraMainCF adds Postfix main.cf parameters.
	ExtraMainCF map[string]string
}

// Env is a running gateway + Postfix + sink.
type Env struct {
	T       testing.TB
	Daemon  *daemon.Daemon
	Postfix *testenv.Postfix
	Sink    *testenv.Sink
	// ConfigPath is the gateway's config file (rewrite it and call Reload).
	ConfigPath string
	log        *testenv.LogBuffer
}

// Start starts the sink, the gateway and Postfix, and stops them at cleanup.
func Start(t testing.TB, opts Options) *Env {
	t.Helper()
	testenv.Need(t, "postfix")
	sink := testenv.StartSink(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "aupguard.yaml")
	listen := opts.Listen
	if listen == "" {
		listen = "inet:127.0.0.1:0"
	}
	cfg, err := WithListen(opts.Config, listen)
	if err != nil {
		t.Fatalf("gwtest: config: %v", err)
	}
	if err := os.WriteFile(path, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	e := &Env{T: t, Sink: sink, ConfigPath: path, log: &testenv.LogBuffer{}}
	e.Daemon, err = daemon.New(daemon.Options{ConfigPath: path, LogOutput: e.log})
	if err != nil {
		t.Fatalf("gwtest: gateway: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Daemon.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Errorf("gwtest: gateway did not stop")
		}
		if t.Failed() {
			t.Logf("gateway log:\n%s", tail(e.log.String(), 60))
		}
	})
	e.Postfix = testenv.StartPostfix(t, testenv.PostfixOptions{
		MilterAddr:          e.MilterAddr(),
		MilterDefaultAction: opts.MilterDefaultAction,
		RelayTo:             sink.Addr(),
		SASLUsers:           opts.SASLUsers,
		ExtraMainCF:         opts.ExtraMainCF,
	})
	return e
}

// MilterAddr is the gateway's milter address in Postfix's syntax
// (inet:HOST:PORT or unix:PATH).
func (e *Env) MilterAddr() string {
	a := e.Daemon.MilterAddr()
	if a.Network() == "unix" {
		return "unix:" + a.String()
	}
	return "inet:" + a.String()
}

// WithListen returns the YAML config with milter.listen set.
func WithListen(config, listen string) ([]byte, error) {
	var m map[string]any
	if err := yaml.Unmarshal([]byte(config), &m); err != nil {
		return nil, err
	}
	if m == nil {
		m = map[string]any{}
	}
	mil, _ := m["milter"].(map[string]any)
	if mil == nil {
		mil = map[string]any{}
	}
	mil["listen"] = listen
	m["milter"] = mil
	// Other listeners default to fixed ports; tests running in parallel
	// (and a gateway running on the machine) must not collide on them.
	for _, p := range [][]string{{"optout", "unsubscribe", "listen"}, {"admin", "listen"}} {
		setDefault(m, p, "127.0.0.1:0")
	}
	return yaml.Marshal(m)
}

// Send sends one message through Postfix's plain listener.
func (e *Env) Send(o testenv.SendOptions) *testenv.SMTPResult {
	e.T.Helper()
	r, err := testenv.SendMail(e.Postfix.SMTPAddr(), o)
	if err != nil {
		e.T.Fatalf("gwtest: send: %v\nPostfix log:\n%s", err, tail(e.Postfix.Log(), 30))
	}
	return r
}

// Submit sends one message through Postfix's SASL submission listener.
func (e *Env) Submit(o testenv.SendOptions) *testenv.SMTPResult {
	e.T.Helper()
	r, err := testenv.SendMail(e.Postfix.SubmissionAddr(), o)
	if err != nil {
		e.T.Fatalf("gwtest: submit: %v\nPostfix log:\n%s", err, tail(e.Postfix.Log(), 30))
	}
	return r
}

// Log returns the gateway's log so far.
func (e *Env) Log() string { return e.log.String() }

// Decisions returns the gateway's decision log lines (JSON), parsed.
func (e *Env) Decisions() []map[string]any {
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(e.log.String()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil && m["msg"] == "decision" {
			out = append(out, m)
		}
	}
	return out
}

// WaitDecisions waits until at least n decision lines were logged.
func (e *Env) WaitDecisions(n int, timeout time.Duration) []map[string]any {
	e.T.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ds := e.Decisions()
		if len(ds) >= n || time.Now().After(deadline) {
			return ds
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Reload rewrites the gateway config (milter.listen is kept) and reloads.
func (e *Env) Reload(config string) error {
	cfg, err := WithListen(config, e.MilterAddr())
	if err != nil {
		return err
	}
	if err := os.WriteFile(e.ConfigPath, cfg, 0o600); err != nil {
		return err
	}
	return e.Daemon.Reload()
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// setDefault sets the nested key path to v unless it is already set.
func setDefault(m map[string]any, path []string, v string) {
	for _, k := range path[:len(path)-1] {
		next, _ := m[k].(map[string]any)
		if next == nil {
			next = map[string]any{}
			m[k] = next
		}
		m = next
	}
	if _, ok := m[path[len(path)-1]]; !ok {
		m[path[len(path)-1]] = v
	}
}
