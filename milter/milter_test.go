package milter

import (
	"context"
	"io"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	gm "github.com/d--j/go-milter"

	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/gateway"
	"github.com/aupguard/aupguard/internal/engine/policy"
	"github.com/aupguard/aupguard/internal/engine/setup"
	"github.com/aupguard/aupguard/internal/secrets"
	"github.com/aupguard/aupguard/internal/store"
)

// testCheck refuses one recipient at RCPT, panics on a marked sender,
// signs (adds a header) at EOM and records how transactions finished.
type testCheck struct {
	mu       sync.Mutex
	finished []bool
	bodyLen  int
}

type countWriter struct{ c *testCheck }

func (w countWriter) Write(p []byte) (int, error) {
	w.c.mu.Lock()
	w.c.bodyLen += len(p)
	w.c.mu.Unlock()
	return len(p), nil
}

func (c *testCheck) Name() string { return "test" }
func (c *testCheck) Mail(_ context.Context, t *policy.Txn) ([]policy.Finding, error) {
	if t.MailFrom.Local == "panic" {
		panic("check bug")
	}
	return nil, nil
}
func (c *testCheck) Rcpt(_ context.Context, _ *policy.Txn, r *policy.Rcpt) ([]policy.Finding, error) {
	if r.Addr.Local == "optedout" {
		return []policy.Finding{{Name: "recipient_opted_out", Action: policy.Reject, Reply: policy.MustReply(550, "5.7.1", "Recipient opted out")}}, nil
	}
	return nil, nil
}
func (c *testCheck) Body(*policy.Txn) io.Writer { return countWriter{c} }
func (c *testCheck) EOM(_ context.Context, t *policy.Txn) ([]policy.Finding, error) {
	t.AddHeader("X-Test-Signed", "yes")
	if len(t.HeaderValues("X-Hold")) > 0 {
		return []policy.Finding{{Name: "hold_me", Action: policy.Quarantine}}, nil
	}
	return nil, nil
}
func (c *testCheck) Finish(_ context.Context, _ *policy.Txn, accepted bool) {
	c.mu.Lock()
	c.finished = append(c.finished, accepted)
	c.mu.Unlock()
}

func startServer(t *testing.T, check policy.Check) *Server {
	t.Helper()
	return startServerWith(t, check, Options{})
}

// startServerWith starts a server for the customer acme with one check;
// opts' Listen and MaxConnections are set here.
func startServerWith(t testing.TB, check policy.Check, opts Options) *Server {
	t.Helper()
	cfg, err := config.Parse([]byte(`
customers:
  - id: acme
    logins: [acme]
    networks: [127.0.0.5/32]
    domains: [acme.example]
`), "t.yaml", config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	h, _ := store.Open(cfg.Store, nil)
	deps := &setup.Deps{Config: cfg, Store: h, Secret: secrets.Key("0123456789abcdef")}
	st, err := gateway.NewState(deps, policy.NewChain([]policy.Step{{Check: check, Enabled: true, OnError: policy.Defer}}).ReportPanics(opts.Panics))
	if err != nil {
		t.Fatal(err)
	}
	eng := gateway.NewEngine(st, nil, nil)
	if opts.Listen == "" {
		opts.Listen = "inet:127.0.0.1:0"
	}
	opts.MaxConnections = 8
	s, err := Listen(eng, opts)
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})
	return s
}

func session(t testing.TB, s *Server, login, client string) *gm.ClientSession {
	t.Helper()
	c := gm.NewClient("tcp", s.Addr().String(), gm.WithActions(gm.AllClientSupportedActionMasks))
	macros := gm.NewMacroBag()
	macros.Set(gm.MacroAuthAuthen, login)
	macros.Set(gm.MacroQueueId, "4ABCDEF")
	cs, err := c.Session(macros)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cs.Close() })
	if _, err := cs.Conn("client.example", gm.FamilyInet, 25000, client); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.Helo("client.example"); err != nil {
		t.Fatal(err)
	}
	return cs
}

func TestNegotiation(t *testing.T) {
	s := startServer(t, &testCheck{})
	cs := session(t, s, "acme", "127.0.0.9")
	for _, f := range []gm.OptProtocol{gm.OptNoConnReply, gm.OptNoHeloReply, gm.OptNoHeaderReply, gm.OptNoEOHReply, gm.OptNoBodyReply, gm.OptNoDataReply, gm.OptHeaderLeadingSpace} {
		if !cs.ProtocolOption(f) {
			t.Errorf("protocol option %v not negotiated", f)
		}
	}
	for _, f := range []gm.OptProtocol{gm.OptNoMailReply, gm.OptNoRcptReply} {
		if cs.ProtocolOption(f) {
			t.Errorf("%v negotiated: the gateway must reply at MAIL and RCPT", f)
		}
	}
	if !cs.ActionOption(gm.OptAddHeader) || !cs.ActionOption(gm.OptQuarantine) {
		t.Error("add-header and quarantine actions not negotiated")
	}
}

func TestUnidentifiedRefused(t *testing.T) {
	s := startServer(t, &testCheck{})
	cs := session(t, s, "", "203.0.113.9")
	act, err := cs.Mail("someone@elsewhere.example", "")
	if err != nil {
		t.Fatal(err)
	}
	if act.SMTPCode != 550 || !strings.HasPrefix(act.SMTPReply, "550 5.7.1 ") || !strings.Contains(act.SMTPReply, "(ref ") {
		t.Fatalf("got %d %q", act.SMTPCode, act.SMTPReply)
	}
}

func TestPerRecipientRefusalKeepsTransaction(t *testing.T) {
	chk := &testCheck{}
	s := startServer(t, chk)
	cs := session(t, s, "acme", "203.0.113.9")
	if act, err := cs.Mail("news@acme.example", "SIZE=100"); err != nil || act.StopProcessing() {
		t.Fatalf("mail: %v %v", act, err)
	}
	good, err := cs.Rcpt("alice@example.org", "")
	if err != nil || good.StopProcessing() {
		t.Fatalf("rcpt alice: %v %v", good, err)
	}
	bad, err := cs.Rcpt("optedout@example.org", "")
	if err != nil || bad.SMTPCode != 550 || !strings.HasPrefix(bad.SMTPReply, "550 5.7.1 Recipient opted out") {
		t.Fatalf("rcpt optedout: %+v %v", bad, err)
	}
	again, err := cs.Rcpt("bob@example.org", "")
	if err != nil || again.StopProcessing() {
		t.Fatalf("rcpt after a refused one: %v %v", again, err)
	}
	if _, err := cs.DataStart(); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.HeaderField("From", " <news@acme.example>", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.HeaderEnd(); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.BodyChunk([]byte("hello\r\n")); err != nil {
		t.Fatal(err)
	}
	mods, act, err := cs.End()
	if err != nil || act.Type != gm.ActionAccept {
		t.Fatalf("end: %v %v", act, err)
	}
	if len(mods) != 1 || mods[0].HeaderName != "X-Test-Signed" || mods[0].Type != gm.ActionInsertHeader {
		t.Fatalf("modifications %v", mods)
	}
	chk.mu.Lock()
	defer chk.mu.Unlock()
	if len(chk.finished) != 1 || !chk.finished[0] || chk.bodyLen != 7 {
		t.Fatalf("finished %v body %d", chk.finished, chk.bodyLen)
	}
}

func TestQuarantine(t *testing.T) {
	s := startServer(t, &testCheck{})
	cs := session(t, s, "acme", "203.0.113.9")
	cs.Mail("news@acme.example", "")
	cs.Rcpt("alice@example.org", "")
	cs.DataStart()
	cs.HeaderField("X-Hold", " 1", nil)
	cs.HeaderEnd()
	cs.BodyChunk([]byte("x\r\n"))
	mods, act, err := cs.End()
	if err != nil || act.Type != gm.ActionAccept {
		t.Fatalf("end: %v %v", act, err)
	}
	var held bool
	for _, m := range mods {
		if m.Type == gm.ActionQuarantine && strings.Contains(m.Reason, "test/hold_me") {
			held = true
		}
	}
	if !held {
		t.Fatalf("no quarantine in %v", mods)
	}
}

func TestPanicBecomesTempfailNotDroppedConnection(t *testing.T) {
	chk := &testCheck{}
	s := startServer(t, chk)
	cs := session(t, s, "acme", "203.0.113.9")
	act, err := cs.Mail("panic@acme.example", "")
	if err != nil {
		t.Fatalf("connection dropped: %v", err)
	}
	if act.SMTPCode != 451 || !strings.HasPrefix(act.SMTPReply, "451 4.3.0") {
		t.Fatalf("got %+v", act)
	}
	// The same connection carries on with the next transaction.
	if err := cs.Abort(nil); err != nil {
		t.Fatal(err)
	}
	if act, err := cs.Mail("ok@acme.example", ""); err != nil || act.StopProcessing() {
		t.Fatalf("next transaction: %v %v", act, err)
	}
}

func TestAllowedMTAs(t *testing.T) {
	cfg, _ := config.Parse([]byte("customers: []\n"), "t.yaml", config.Options{})
	h, _ := store.Open(cfg.Store, nil)
	st, _ := gateway.NewState(&setup.Deps{Config: cfg, Store: h, Secret: secrets.Key("0123456789abcdef")}, policy.NewChain(nil))
	s, err := Listen(gateway.NewEngine(st, nil, nil), Options{Listen: "inet:127.0.0.1:0", AllowedMTAs: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}})
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve()
	defer s.Shutdown(context.Background())
	c := gm.NewClient("tcp", s.Addr().String())
	if cs, err := c.Session(gm.NewMacroBag()); err == nil {
		cs.Close()
		t.Fatal("a connection from outside allowed_mtas was served")
	}
}

func TestParseAddress(t *testing.T) {
	tests := []struct{ in, network, addr string }{
		{"inet:127.0.0.1:8891", "tcp", "127.0.0.1:8891"},
		{"inet6:[::1]:8891", "tcp", "[::1]:8891"},
		{"unix:/run/aupguard.sock", "unix", "/run/aupguard.sock"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			n, a, err := ParseAddress(tt.in)
			if err != nil || n != tt.network || a != tt.addr {
				t.Fatalf("%s %s %v", n, a, err)
			}
		})
	}
	for _, bad := range []string{"tcp:1", "inet:nohost", "inet:", ""} {
		if _, _, err := ParseAddress(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
