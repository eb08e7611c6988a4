package testenv

import (
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	milter "github.com/d--j/go-milter"
)

// localConn is what the recording milter saw on one milter connection.
type localConn struct {
	host, family string
	port         uint16
	addr         string
	helo         string
	from         string
	macros       map[string]string // at MAIL
	headers      []string          // "Name: value"
}

type localRecorder struct {
	mu    sync.Mutex
	conns []*localConn
}

type localMilter struct {
	milter.NoOpMilter
	rec *localRecorder
	c   *localConn
}

var localMacros = []string{"j", "_", "{daemon_name}", "{client_addr}", "{client_port}", "{client_name}", "{auth_authen}", "{mail_addr}", "i"}

func (m *localMilter) Connect(host, family string, port uint16, addr string, _ milter.Modifier) (*milter.Response, error) {
	m.c = &localConn{host: host, family: family, port: port, addr: addr, macros: map[string]string{}}
	m.rec.mu.Lock()
	m.rec.conns = append(m.rec.conns, m.c)
	m.rec.mu.Unlock()
	return milter.RespContinue, nil
}

func (m *localMilter) Helo(name string, _ milter.Modifier) (*milter.Response, error) {
	m.rec.mu.Lock()
	m.c.helo = name
	m.rec.mu.Unlock()
	return milter.RespContinue, nil
}

func (m *localMilter) MailFrom(from, _ string, mod milter.Modifier) (*milter.Response, error) {
	m.rec.mu.Lock()
	defer m.rec.mu.Unlock()
	m.c.from = from
	for _, n := range localMacros {
		if v, ok := mod.GetEx(n); ok {
			m.c.macros[n] = v
		}
	}
	return milter.RespContinue, nil
}

func (m *localMilter) Header(name, value string, _ milter.Modifier) (*milter.Response, error) {
	m.rec.mu.Lock()
	m.c.headers = append(m.c.headers, name+": "+strings.TrimSpace(value))
	m.rec.mu.Unlock()
	return milter.RespContinue, nil
}

func (m *localMilter) EndOfMessage(milter.Modifier) (*milter.Response, error) {
	m.rec.mu.Lock()
	defer m.rec.mu.Unlock()
	for _, h := range m.c.headers {
		switch {
		case strings.HasPrefix(h, "Subject: REJECT"):
			return milter.RejectWithCodeAndReason(550, "5.7.1 refused by test milter")
		case strings.HasPrefix(h, "Subject: TEMPFAIL"):
			return milter.RejectWithCodeAndReason(451, "4.7.1 deferred by test milter")
		}
	}
	return milter.RespAccept, nil
}

// TestPostfixLocalSubmission documents what Postfix gives a milter
// (non_smtpd_milters) for mail submitted with sendmail by an unprivileged
// Unix user, through postdrop and pickup, and what it does with the
// milter's answers. docs/config.md ("local_submission") is based on it.
func TestPostfixLocalSubmission(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rec := &localRecorder{}
	srv := milter.NewServer(milter.WithMilter(func() milter.Milter { return &localMilter{rec: rec} }))
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	sink := StartSink(t)
	pf := StartPostfix(t, PostfixOptions{MilterAddr: "inet:" + ln.Addr().String(), RelayTo: sink.Addr(), ExtraMainCF: map[string]string{
		"milter_mail_macros": "i j _ {daemon_name} {client_addr} {client_port} {client_name} {auth_authen} {mail_addr}",
	}})
	find := func(subject string) *localConn {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			rec.mu.Lock()
			for _, c := range rec.conns {
				for _, h := range c.headers {
					if h == "Subject: "+subject {
						rec.mu.Unlock()
						return c
					}
				}
			}
			rec.mu.Unlock()
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatalf("the milter never saw %q\n%s", subject, pf.Log())
		return nil
	}

	// A PHP-style message from www-data (uid 33) without Date, Message-ID
	// and From, and with a Received: line of its own.
	msg := "Received: by mta1.provider.test (Postfix, from userid 0)\nTo: rcpt@example.net\nSubject: php\n\nbody\n"
	if out, err := pf.SendmailAs("www-data", []string{"-t", "-i", "-f", "web1@acme.example"}, []byte(msg)); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	c := find("php")
	t.Logf("connect host=%q family=%q port=%d addr=%q helo=%q mail=%q macros=%v headers=%q", c.host, c.family, c.port, c.addr, c.helo, c.from, c.macros, c.headers)
	if c.host != "localhost" || c.port != 0 || c.addr != "127.0.0.1" || c.helo != "localhost" || c.from != "web1@acme.example" {
		t.Errorf("connection: host=%q port=%d addr=%q helo=%q from=%q", c.host, c.port, c.addr, c.helo, c.from)
	}
	want := map[string]string{"{daemon_name}": "mta1.provider.test", "{client_addr}": "127.0.0.1", "{client_port}": "0", "{client_name}": "localhost", "_": "localhost [127.0.0.1]", "{mail_addr}": "web1@acme.example"}
	for k, v := range want {
		if c.macros[k] != v {
			t.Errorf("macro %s = %q, want %q", k, c.macros[k], v)
		}
	}
	if c.macros["{auth_authen}"] != "" {
		t.Errorf("{auth_authen} = %q", c.macros["{auth_authen}"])
	}
	var received, date, msgid, from int
	for _, h := range c.headers {
		switch {
		case strings.HasPrefix(h, "Received:"):
			received++
			if !strings.Contains(h, "from userid 0") {
				t.Errorf("the milter saw Postfix's own Received: %q", h)
			}
		case strings.HasPrefix(h, "Date:"):
			date++
		case strings.HasPrefix(h, "Message-Id:"):
			msgid++
		case strings.HasPrefix(h, "From:"):
			from++
		}
	}
	if received != 1 || date != 1 || msgid != 1 || from != 1 {
		t.Errorf("headers seen: %q; want the user's Received: only, and Date:, Message-Id:, From: added by Postfix", c.headers)
	}
	got, err := sink.WaitFor(1, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if d := string(got[0].Data); !strings.HasPrefix(d, "Received: by mta1.provider.test (Postfix, from userid 33)") {
		t.Errorf("delivered message does not start with pickup's Received:\n%s", d)
	}

	// Reject at end of message: Postfix bounces non-SMTP mail.
	sink.Reset()
	if out, err := pf.SendmailAs("www-data", []string{"-i", "-f", "web1@acme.example", "rcpt@example.net"}, []byte("Subject: REJECT\n\nx\n")); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	find("REJECT")
	if line, err := pf.WaitLog("status=bounced (refused by test milter)", 10*time.Second); err != nil {
		t.Error(err)
	} else {
		t.Logf("reject: %s", line)
	}

	// Tempfail: the message stays in maildrop, nothing bounces, and pickup
	// retries it.
	if out, err := pf.SendmailAs("www-data", []string{"-i", "-f", "web1@acme.example", "rcpt@example.net"}, []byte("Subject: TEMPFAIL\n\nx\n")); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	find("TEMPFAIL")
	if _, err := pf.WaitLog("4.7.1 deferred by test milter", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	if n, err := pf.MaildropLen(); err != nil || n != 1 {
		t.Errorf("maildrop holds %d message(s) (%v), want the deferred one", n, err)
	}
	if strings.Count(pf.Log(), "status=bounced") != 1 {
		t.Errorf("the deferred message bounced:\n%s", pf.Log())
	}
	before := strings.Count(pf.Log(), "4.7.1 deferred by test milter")
	pf.KickPickup()
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(pf.Log(), "4.7.1 deferred by test milter") == before && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if strings.Count(pf.Log(), "4.7.1 deferred by test milter") == before {
		t.Error("pickup did not retry the deferred message")
	}
}
