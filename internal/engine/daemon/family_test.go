package daemon_test

import (
	"bytes"
	"context"
	"html/template"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/daemon"
	"github.com/aupguard/aupguard/internal/engine/policy"
	"github.com/aupguard/aupguard/internal/engine/setup"
	_ "github.com/aupguard/aupguard/internal/plugins"
	"github.com/aupguard/aupguard/internal/testkit/testenv"
)

// scratchCheck reports scratch_hit on every message, at end of message.
type scratchCheck struct{}

func (scratchCheck) Name() string { return "scratch_check" }
func (scratchCheck) EOM(context.Context, *policy.Txn) ([]policy.Finding, error) {
	return []policy.Finding{{Name: "scratch_hit", Detail: "seen by the scratch family", Action: policy.Accept}}, nil
}

var scratchSpec = policy.Spec{Name: "scratch_check", Findings: []policy.FindingSpec{
	{Name: "scratch_hit", Action: policy.Accept, Doc: "every message (test family)"},
}}

// scratchFamily is a family the core has never heard of: one check, an
// admin route, a metric, a report section, a console panel and a command,
// all declared here and nowhere else.
var scratchFamily = setup.Family{
	Name:   "scratch",
	Checks: []setup.Check{{Spec: scratchSpec, New: func(*setup.Deps) (policy.Check, error) { return scratchCheck{}, nil }}},
	Setup: func(h *setup.Host) error {
		served := prometheus.NewCounter(prometheus.CounterOpts{Name: "aupguard_scratch_served_total", Help: "Scratch route requests."})
		h.Collector(served)
		h.AdminRoute("GET /api/scratch", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			served.Inc()
			io.WriteString(w, "scratch ok")
		}))
		h.ReportSection(setup.ReportSection{Name: "scratch", Title: "Scratch section",
			Build: func(_ context.Context, q setup.ReportQuery) (any, error) {
				return map[string]any{"period_hours": q.Until.Sub(q.Since).Hours()}, nil
			},
			HTML: func(any) template.HTML { return "<p>scratch</p>" }})
		h.ConsolePanel(setup.ConsolePanel{Name: "scratch", Title: "Scratch panel",
			Customer: func(_ context.Context, _ *config.Config, id string) (template.HTML, error) {
				return template.HTML("<p id=scratch-panel>" + template.HTMLEscapeString(id) + "</p>"), nil
			}})
		return nil
	},
	Commands: []setup.Command{{Name: "scratch", Summary: "scratch command", Run: func(args []string, env *setup.Env) int {
		io.WriteString(env.Stdout, "scratch ran "+strings.Join(args, " "))
		return 0
	}}},
}

func init() { setup.Register(scratchFamily) }

// TestScratchFamilyIsServedWithoutCoreEdits: a family registered from
// outside the core gets its check run in the chain (explain), its admin
// route served behind the token, its metric in /metrics, its report
// section in the report API, its panel on the console and its command
// found by the binary's lookup.
func TestScratchFamilyIsServedWithoutCoreEdits(t *testing.T) {
	dir := t.TempDir()
	storeDir := filepath.Join(dir, "store")
	if err := os.MkdirAll(storeDir, 0o700); err != nil {
		t.Fatal(err)
	}
	const token = "0123456789abcdef-admin-token"
	tok := filepath.Join(dir, "token")
	os.WriteFile(tok, []byte(token+"\n"), 0o600)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	adminAddr := ln.Addr().String()
	ln.Close()
	cfg := filepath.Join(dir, "aupguard.yaml")
	os.WriteFile(cfg, []byte(`
milter: {listen: "inet:127.0.0.1:0"}
store: {backend: memory, path: `+storeDir+`}
chain: [header_syntax, scratch_check]
admin: {listen: "`+adminAddr+`", token_file: `+tok+`}
optout: {unsubscribe: {listen: "127.0.0.1:0"}}
customers:
  - id: acme
    networks: [192.0.2.1]
    domains: [acme.example]
`), 0o600)
	logBuf := &testenv.LogBuffer{}
	d, err := daemon.New(daemon.Options{ConfigPath: cfg, LogOutput: logBuf})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	defer func() {
		cancel()
		<-done
		if t.Failed() {
			t.Logf("log:\n%s", logBuf.String())
		}
	}()
	call := func(method, path string, auth bool, body []byte) (int, string) {
		t.Helper()
		var resp *http.Response
		for i := 0; i < 100; i++ {
			req, _ := http.NewRequest(method, "http://"+adminAddr+path, bytes.NewReader(body))
			if auth {
				req.Header.Set("Authorization", "Bearer "+token)
			}
			if method == "POST" {
				req.Header.Set("Content-Type", "message/rfc822")
			}
			if resp, err = http.DefaultClient.Do(req); err == nil {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := call("GET", "/api/scratch", false, nil); code != http.StatusUnauthorized {
		t.Errorf("route without the token: %d %q, want 401", code, body)
	}
	if code, body := call("GET", "/api/scratch", true, nil); code != 200 || body != "scratch ok" {
		t.Errorf("route: %d %q, want 200 scratch ok", code, body)
	}
	if _, body := call("GET", "/metrics", true, nil); !strings.Contains(body, "aupguard_scratch_served_total 1") {
		t.Errorf("/metrics has no aupguard_scratch_served_total 1")
	}
	msg := []byte("From: a@acme.example\r\nTo: b@example.org\r\nSubject: hi\r\nDate: Tue, 08 Dec 2026 02:00:00 +0000\r\nMessage-ID: <1@acme.example>\r\n\r\nhello\r\n")
	if code, body := call("POST", "/api/explain?customer=acme&mail_from=a@acme.example&rcpt=b@example.org", true, msg); code != 200 || !strings.Contains(body, "scratch_hit") {
		t.Errorf("explain: %d %.400s, want the scratch check's finding", code, body)
	}
	if code, body := call("GET", "/api/report", true, nil); code != 200 || !strings.Contains(strings.Join(strings.Fields(body), ""), `"sections":{"scratch":{"period_hours":24}}`) {
		t.Errorf("report: %d %.400s, want the scratch section", code, body)
	}
	if code, body := call("GET", "/api/report?format=html", true, nil); code != 200 || !strings.Contains(body, "<h2>Scratch section</h2>") {
		t.Errorf("HTML report: %d, no scratch section", code)
	}
	if code, body := call("GET", "/customers/acme", true, nil); code != 200 || !strings.Contains(body, "<p id=scratch-panel>acme</p>") {
		t.Errorf("console: %d, no scratch panel", code)
	}
	c, ok := setup.Subcommand("", "scratch")
	if !ok {
		t.Fatal("the scratch command is not found")
	}
	var out bytes.Buffer
	if rc := c.Run([]string{"x"}, &setup.Env{Stdout: &out}); rc != 0 || out.String() != "scratch ran x" {
		t.Errorf("command: %d %q", rc, out.String())
	}
}
