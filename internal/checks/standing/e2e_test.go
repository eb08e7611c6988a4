package standing_test

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

	"github.com/aupguard/aupguard/internal/checks/standing"
	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/gateway"
	"github.com/aupguard/aupguard/internal/engine/setup"
	"github.com/aupguard/aupguard/internal/testkit/fakedns"
	"github.com/aupguard/aupguard/internal/testkit/gwtest"
	"github.com/aupguard/aupguard/internal/testkit/testenv"
)

// admin is a test's client of one gateway's admin API.
type admin struct {
	t     *testing.T
	base  string
	token string
}

func adminOf(t *testing.T, env *gwtest.Env, tokenFile string) *admin {
	t.Helper()
	a := env.Daemon.ServiceAddr("admin")
	if a == nil {
		t.Fatal("no admin server")
	}
	tok, err := os.ReadFile(tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	return &admin{t: t, base: "http://" + a.String(), token: strings.TrimSpace(string(tok))}
}

// do sends one request and returns the status and body.
func (a *admin) do(method, path, body string) (int, []byte) {
	a.t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, a.base+path, r)
	if err != nil {
		a.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// list returns the stops the API lists.
func (a *admin) list() []standing.Entry {
	a.t.Helper()
	code, b := a.do(http.MethodGet, "/api/standing", "")
	if code != http.StatusOK {
		a.t.Fatalf("GET /api/standing: %d %s", code, b)
	}
	var l standing.Listing
	if err := json.Unmarshal(b, &l); err != nil {
		a.t.Fatal(err)
	}
	return l.Stops
}

// command runs one of the family's commands as the binary does.
func command(t *testing.T, name string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb strings.Builder
	env := &setup.Env{Stdout: &out, Stderr: &errb, LoadConfig: func(p string) (*config.Config, bool) {
		cfg, err := config.Load(p, gateway.ConfigOptions())
		if err != nil {
			fmt.Fprintln(&errb, err)
		}
		return cfg, err == nil
	}}
	for _, c := range standing.Commands {
		if c.Name == name {
			return c.Run(args, env), out.String(), errb.String()
		}
	}
	t.Fatalf("no command %s", name)
	return 0, "", ""
}

func find(es []standing.Entry, scope standing.Scope, id, source string) (standing.Entry, bool) {
	for _, e := range es {
		if e.Scope == scope && e.ID == id && e.Source == source {
			return e, true
		}
	}
	return standing.Entry{}, false
}

const phishWorld = `
phish.example.dbl.test.    A 127.0.1.4
`

func message(i int, body string) []byte {
	return []byte(fmt.Sprintf("From: a@acme.example\r\nTo: b@mailbox.example\r\nSubject: note %d\r\nMessage-ID: <%d.%d@acme.example>\r\n\r\n%s", i, i, time.Now().UnixNano(), body))
}

// held reports whether Postfix's hold queue has a message.
func heldCount(p *testenv.Postfix) int {
	n := 0
	for _, m := range p.Queue() {
		if m.QueueName == "hold" {
			n++
		}
	}
	return n
}

// TestContentFlagHoldsThroughPostfix: the third phishing message (a link
// to a listed domain) of a customer flags it; its next clean message is
// accepted into Postfix's hold queue (not delivered, nothing bounced),
// the API lists the flag with its sample references; lifted through the
// API, the customer's mail flows again.
func TestContentFlagHoldsThroughPostfix(t *testing.T) {
	fake := fakedns.Start(t, phishWorld)
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "admin.token")
	cfg := `
log: {format: json}
store: {backend: memory, path: ` + filepath.Join(dir, "store") + `}
admin: {token_file: ` + tokenFile + `}
dns: {servers: ["` + fake.Addr() + `"], timeout: 1s}
chain: [standing, listed_url]
content:
  urls:
    zones: [{zone: dbl.test, kind: dbl}]
standing:
  content: {threshold: 3, window: 1h}
customers:
  - id: acme
    networks: [127.0.0.5/32]
    domains: [acme.example]
`
	env := gwtest.Start(t, gwtest.Options{Config: cfg})
	api := adminOf(t, env, tokenFile)
	send := func(i int, body string) *testenv.SMTPResult {
		return env.Send(testenv.SendOptions{LocalAddr: "127.0.0.5", From: "a@acme.example", To: []string{"b@mailbox.example"}, Data: message(i, body)})
	}
	var refusedAt time.Time
	for i := 1; i <= 3; i++ {
		r := send(i, "Log in: https://login.phish.example/acct\r\n")
		if e := r.EndOfData; e == nil || e.Code != 550 || !strings.Contains(e.Text, "phish.example") {
			t.Fatalf("phishing message %d: want 550 naming phish.example, got %s", i, r)
		}
		refusedAt = time.Now()
		if i < 3 {
			if _, ok := find(api.list(), standing.ScopeCustomer, "acme", standing.SourceContent); ok {
				t.Fatalf("flagged after %d findings, threshold is 3", i)
			}
		}
	}
	var flag standing.Entry
	deadline := time.Now().Add(5 * time.Second)
	for {
		e, ok := find(api.list(), standing.ScopeCustomer, "acme", standing.SourceContent)
		if ok {
			flag = e
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no content flag 5s after the third phishing message: %+v", api.list())
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("content flag listed %s after the third refusal", time.Since(refusedAt).Round(time.Millisecond))
	if flag.Action != standing.ActionHold || !flag.Active || len(flag.Samples) != 3 || flag.Who != "aupguard" {
		t.Fatalf("flag %+v: want action hold, active, 3 sample references, by aupguard", flag)
	}

	before := heldCount(env.Postfix)
	env.Sink.Reset()
	r := send(10, "Quarterly figures attached.\r\n")
	if !r.Delivered() {
		t.Fatalf("flagged customer's clean message: want 250 (held, not refused), got %s", r)
	}
	if n := heldCount(env.Postfix); n != before+1 {
		t.Fatalf("hold queue has %d messages, want %d: %+v", n, before+1, env.Postfix.Queue())
	}
	if _, err := env.Sink.WaitFor(1, 2*time.Second); err == nil {
		t.Fatal("the held message was delivered")
	}
	ds := env.Decisions()
	if d := ds[len(ds)-2]; d["stage"] != "mail" || d["finding"] != standing.FindingHold || d["action"] != "quarantine" {
		t.Fatalf("MAIL decision %v: want finding %s, action quarantine", d, standing.FindingHold)
	}
	if d := ds[len(ds)-1]; d["stage"] != "eom" || d["finding"] != standing.FindingHold || d["effective"] != "quarantine" || d["queue_id"] == "" {
		t.Fatalf("EOM decision %v: want the message held (finding %s, effective quarantine, its queue id)", d, standing.FindingHold)
	}

	if code, b := api.do(http.MethodGet, "/metrics", ""); code != http.StatusOK || !strings.Contains(string(b), `aupguard_standing_stops{action="hold"} 1`) {
		t.Fatalf("metrics: %d, want aupguard_standing_stops{action=\"hold\"} 1", code)
	}
	if code, b := api.do(http.MethodDelete, "/api/standing/customer/acme", ""); code != http.StatusOK {
		t.Fatalf("lifting the flag: %d %s", code, b)
	}
	if _, ok := find(api.list(), standing.ScopeCustomer, "acme", standing.SourceContent); ok {
		t.Fatal("flag still listed after DELETE")
	}
	env.Sink.Reset()
	if r := send(11, "Hello again.\r\n"); !r.Delivered() {
		t.Fatalf("after the flag was lifted: %s", r)
	}
	if _, err := env.Sink.WaitFor(1, 20*time.Second); err != nil {
		t.Fatalf("clean mail after the flag was lifted not delivered: %v", err)
	}
	if n := heldCount(env.Postfix); n != before+1 {
		t.Fatalf("hold queue has %d messages after lifting, want %d (the held one only)", n, before+1)
	}
	// One phishing message after lifting does not flag again: the count
	// started over.
	if r := send(12, "https://phish.example/x\r\n"); r.EndOfData == nil || r.EndOfData.Code != 550 {
		t.Fatalf("phishing after lifting: %s", r)
	}
	time.Sleep(200 * time.Millisecond)
	if _, ok := find(api.list(), standing.ScopeCustomer, "acme", standing.SourceContent); ok {
		t.Fatal("flagged again by one finding after the count was reset")
	}
}

// TestSuspendDeferPropagatesAcrossGateways: two gateways (each behind its
// own Postfix) share one Redis; a manual stop with action defer set
// through the first's admin API answers 451 4.7.1 with its reason on the
// second within a second (the time is measured and logged); resumed,
// the second accepts again.
func TestSuspendDeferPropagatesAcrossGateways(t *testing.T) {
	rd := testenv.StartRedis(t, testenv.RedisOptions{})
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "admin.token")
	if err := os.WriteFile(filepath.Join(dir, "secret"), []byte(strings.Repeat("ab", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := `
log: {format: json}
store: {backend: redis, redis: {addrs: ["` + rd.Addr() + `"]}}
secret_file: ` + filepath.Join(dir, "secret") + `
admin: {token_file: ` + tokenFile + `}
chain: [standing]
customers:
  - id: acme
    networks: [127.0.0.5/32]
    domains: [acme.example]
`
	a := gwtest.Start(t, gwtest.Options{Config: cfg})
	b := gwtest.Start(t, gwtest.Options{Config: cfg})
	api := adminOf(t, a, tokenFile)
	sendB := func(i int) *testenv.SMTPResult {
		return b.Send(testenv.SendOptions{LocalAddr: "127.0.0.5", From: "a@acme.example", To: []string{"b@mailbox.example"}, Data: message(i, "hi\r\n")})
	}
	if r := sendB(1); !r.Delivered() {
		t.Fatalf("before the stop: %s", r)
	}
	// The command, as `aupguard suspend` runs it, against gateway A.
	if code, out, errOut := command(t, "suspend", "customer", "acme", "-action", "defer", "-reason", "Unpaid invoice, call billing",
		"-config", a.ConfigPath, "-admin", api.base); code != 0 || !strings.Contains(out, "customer acme stopped: defer") {
		t.Fatalf("aupguard suspend: exit %d\n%s%s", code, out, errOut)
	}
	set := time.Now()
	var took time.Duration
	for i := 2; ; i++ {
		r := sendB(i)
		if r.Mail != nil && r.Mail.Code == 451 {
			took = time.Since(set)
			if r.Mail.EnhancedCode != "4.7.1" || !strings.Contains(r.Mail.Text, "Unpaid invoice, call billing") {
				t.Fatalf("deferred without the reason: %s", r)
			}
			break
		}
		if time.Since(set) > 3*time.Second {
			t.Fatalf("second gateway still accepting 3s after the stop: %s", r)
		}
	}
	t.Logf("stop set on gateway A answered 451 on gateway B after %s", took.Round(time.Millisecond))
	if took > time.Second {
		t.Fatalf("propagation took %s, want within 1s", took)
	}
	es := api.list()
	e, ok := find(es, standing.ScopeCustomer, "acme", standing.SourceManual)
	if !ok || !strings.HasPrefix(e.Who, "cli") || e.Action != standing.ActionDefer {
		t.Fatalf("listing %+v lacks the manual stop set by the command", es)
	}
	if code, out, _ := command(t, "standing", "-config", a.ConfigPath, "-admin", api.base); code != 0 || !strings.Contains(out, "Unpaid invoice, call billing") {
		t.Fatalf("aupguard standing: exit %d\n%s", code, out)
	}
	if code, out, errOut := command(t, "resume", "customer", "acme", "-config", a.ConfigPath, "-admin", api.base); code != 0 {
		t.Fatalf("aupguard resume: exit %d\n%s%s", code, out, errOut)
	}
	if code, _, errOut := command(t, "resume", "customer", "acme", "-config", a.ConfigPath, "-admin", api.base); code != 1 || !strings.Contains(errOut, "no such stop") {
		t.Fatalf("resuming twice: exit %d %s", code, errOut)
	}
	deadline := time.Now().Add(3 * time.Second)
	for i := 100; ; i++ {
		if r := sendB(i); r.Delivered() {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("second gateway still deferring 3s after resume: %s", r)
		}
	}
}

// TestLoginStopThroughPostfix: a stop of one SASL login (reject) refuses
// that login's mail at MAIL FROM with 550 5.7.1 and its reason; another
// login of the same customer keeps sending; a reseller's stop (defer)
// reaches its customer's mail whatever the login.
func TestLoginStopThroughPostfix(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "admin.token")
	cfg := `
log: {format: json}
store: {backend: memory, path: ` + filepath.Join(dir, "store") + `}
admin: {token_file: ` + tokenFile + `}
chain: [standing]
resellers:
  - id: hostco
customers:
  - id: acme
    reseller: hostco
    logins: [alice@acme.example, bob@acme.example]
    networks: [127.0.0.5/32]
    domains: [acme.example]
`
	env := gwtest.Start(t, gwtest.Options{Config: cfg, SASLUsers: map[string]string{"alice@acme.example": "a-s3cret", "bob@acme.example": "b-s3cret"}})
	api := adminOf(t, env, tokenFile)
	submit := func(login, pw string, i int) *testenv.SMTPResult {
		return env.Submit(testenv.SendOptions{LocalAddr: "127.0.0.9", Auth: &testenv.Credentials{Username: login, Password: pw},
			From: "x@acme.example", To: []string{"b@mailbox.example"}, Data: message(i, "hi\r\n")})
	}
	if code, b := api.do(http.MethodPost, "/api/standing", `{"scope":"login","id":"alice@acme.example","action":"reject","reason":"Password stolen, reset it"}`); code != http.StatusCreated {
		t.Fatalf("suspend login: %d %s", code, b)
	}
	if r := submit("alice@acme.example", "a-s3cret", 1); r.Mail == nil || r.Mail.Code != 550 || r.Mail.EnhancedCode != "5.7.1" || !strings.Contains(r.Mail.Text, "Password stolen, reset it") {
		t.Fatalf("stopped login: want 550 5.7.1 with the reason at MAIL, got %s", r)
	}
	if r := submit("bob@acme.example", "b-s3cret", 2); !r.Delivered() {
		t.Fatalf("the customer's other login: %s", r)
	}
	if code, b := api.do(http.MethodPost, "/api/standing", `{"scope":"reseller","id":"hostco","action":"defer","reason":"Reseller under review"}`); code != http.StatusCreated {
		t.Fatalf("suspend reseller: %d %s", code, b)
	}
	if r := submit("bob@acme.example", "b-s3cret", 3); r.Mail == nil || r.Mail.Code != 451 || !strings.Contains(r.Mail.Text, "Reseller under review") {
		t.Fatalf("reseller stopped: want 451 with the reason, got %s", r)
	}
	if r := submit("alice@acme.example", "a-s3cret", 4); r.Mail == nil || r.Mail.Code != 550 {
		t.Fatalf("the login's reject beats the reseller's defer: got %s", r)
	}
}
