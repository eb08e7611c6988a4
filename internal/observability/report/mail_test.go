package report

import (
	"bytes"
	"context"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/aupguard/aupguard/internal/engine/config"
)

// capture is a go-smtp test server that records what it receives; with
// user set, it requires AUTH PLAIN.
type capture struct {
	user, pass string
	mu         sync.Mutex
	msgs       []captured
	authed     []string
}

type captured struct {
	from string
	to   []string
	data []byte
}

func (c *capture) NewSession(*smtp.Conn) (smtp.Session, error) { return &captureSession{c: c}, nil }

type captureSession struct {
	c      *capture
	authed bool
	from   string
	to     []string
}

func (s *captureSession) AuthMechanisms() []string { return []string{sasl.Plain} }

func (s *captureSession) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, user, pass string) error {
		if user != s.c.user || pass != s.c.pass {
			return errors.New("bad credentials")
		}
		s.authed = true
		s.c.mu.Lock()
		s.c.authed = append(s.c.authed, user)
		s.c.mu.Unlock()
		return nil
	}), nil
}

func (s *captureSession) Mail(from string, _ *smtp.MailOptions) error {
	if s.c.user != "" && !s.authed {
		return &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Authentication required"}
	}
	s.from = from
	return nil
}
func (s *captureSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.to = append(s.to, to)
	return nil
}
func (s *captureSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.c.mu.Lock()
	s.c.msgs = append(s.c.msgs, captured{s.from, s.to, b})
	s.c.mu.Unlock()
	return nil
}
func (s *captureSession) Reset()        { s.from, s.to = "", nil }
func (s *captureSession) Logout() error { return nil }

func startCapture(t *testing.T, user, pass string) (*capture, int) {
	t.Helper()
	c := &capture{user: user, pass: pass}
	srv := smtp.NewServer(c)
	srv.Domain = "relay.test"
	srv.AllowInsecureAuth = true
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return c, ln.Addr().(*net.TCPAddr).Port
}

func mailConfig(port int) *config.Config {
	cfg := testConfig()
	cfg.Provider.Postmaster = "postmaster@provider.example"
	cfg.Customers[0].AbuseContact = "abuse@acme.example"
	cfg.Customers[1].AbuseContact = "Beta Abuse <abuse@beta.example>"
	cfg.Customers = append(cfg.Customers, config.Customer{ID: "quiet", AbuseContact: "abuse@quiet.example"})
	cfg.Reports = config.ReportsConfig{Top: 10, CustomerReports: "stopped", SubjectPrefix: "[aupguard]",
		SMTP: config.ReportSMTP{Host: "127.0.0.1", Port: port, TLS: "opportunistic", Helo: "reports.provider.example", Timeout: 5 * time.Second}}
	return cfg
}

func TestMailReports(t *testing.T) {
	srv, port := startCapture(t, "reporter", "s3cret")
	cfg := mailConfig(port)
	pw := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pw, []byte("s3cret\n"), 0o600)
	cfg.Reports.SMTP.Username, cfg.Reports.SMTP.PasswordFile = "reporter", pw

	src := recorded(t)
	now := base.Add(3 * time.Hour)
	msgs, err := Daily(context.Background(), src, cfg, standing, base, now, now)
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewMailer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sent, err := m.Send(context.Background(), msgs, now)
	if err != nil || sent != 3 {
		t.Fatalf("sent %d: %v", sent, err)
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if len(srv.authed) != 1 {
		t.Fatalf("AUTH %v, want once", srv.authed)
	}
	// The postmaster's summary, and acme's and beta's own reports; the
	// quiet customer had nothing stopped.
	var rcpts []string
	for _, c := range srv.msgs {
		if c.from != "postmaster@provider.example" || len(c.to) != 1 {
			t.Fatalf("envelope %s -> %v", c.from, c.to)
		}
		rcpts = append(rcpts, c.to[0])
	}
	if want := "postmaster@provider.example abuse@acme.example abuse@beta.example"; strings.Join(rcpts, " ") != want {
		t.Fatalf("recipients %v, want %s", rcpts, want)
	}
	for i, c := range srv.msgs {
		msg, err := mail.ReadMessage(bytes.NewReader(c.data))
		if err != nil {
			t.Fatal(err)
		}
		if msg.Header.Get("Auto-Submitted") != "auto-generated" || msg.Header.Get("Message-Id") == "" || msg.Header.Get("Date") == "" {
			t.Fatalf("headers %v", msg.Header)
		}
		mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
		if err != nil || mt != "multipart/alternative" {
			t.Fatalf("content type %q %v", mt, err)
		}
		mr := multipart.NewReader(msg.Body, params["boundary"])
		var types []string
		var text, page string
		for {
			p, err := mr.NextPart()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(p) // multipart decodes quoted-printable
			types = append(types, strings.SplitN(p.Header.Get("Content-Type"), ";", 2)[0])
			if strings.HasPrefix(p.Header.Get("Content-Type"), "text/plain") {
				text = string(b)
			} else {
				page = string(b)
			}
		}
		if strings.Join(types, ",") != "text/plain,text/html" {
			t.Fatalf("parts %v", types)
		}
		switch i {
		case 0:
			if !strings.Contains(msg.Header.Get("Subject"), "daily summary") || !strings.Contains(text, "Messages     11") ||
				!strings.Contains(text, "gamma") || !strings.Contains(page, `<svg id="volume-chart"`) {
				t.Fatalf("provider summary:\n%s", text)
			}
		case 1:
			// acme's report holds acme's figures only.
			if !strings.Contains(msg.Header.Get("Subject"), "for acme") || !strings.Contains(text, "Messages     6") ||
				strings.Contains(text, "gamma") || strings.Contains(page, "gamma") || strings.Contains(text, "store down") {
				t.Fatalf("acme report:\n%s", text)
			}
		}
	}
}

func TestMailFailures(t *testing.T) {
	src := recorded(t)
	now := base.Add(3 * time.Hour)
	tests := []struct {
		name    string
		user    string
		mutate  func(cfg *config.Config, dir string)
		wantErr string
	}{
		{"starttls required", "", func(cfg *config.Config, _ string) { cfg.Reports.SMTP.TLS = "starttls" }, "STARTTLS"},
		{"wrong password", "reporter", func(cfg *config.Config, dir string) {
			pw := filepath.Join(dir, "pw")
			os.WriteFile(pw, []byte("wrong"), 0o600)
			cfg.Reports.SMTP.Username, cfg.Reports.SMTP.PasswordFile = "reporter", pw
		}, "AUTH"},
		{"auth required", "reporter", func(*config.Config, string) {}, "Authentication required"},
		{"no relay", "", func(cfg *config.Config, _ string) { cfg.Reports.SMTP.Port = 1 }, "report relay"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, port := startCapture(t, tt.user, "s3cret")
			cfg := mailConfig(port)
			tt.mutate(cfg, t.TempDir())
			msgs, err := Daily(context.Background(), src, cfg, nil, base, now, now)
			if err != nil {
				t.Fatal(err)
			}
			m, _ := NewMailer(cfg)
			if _, err := m.Send(context.Background(), msgs, now); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
	t.Run("no sender", func(t *testing.T) {
		if _, err := NewMailer(&config.Config{}); err == nil {
			t.Fatal("mailer without sender")
		}
	})
	t.Run("customer reports", func(t *testing.T) {
		for mode, want := range map[string]int{"none": 1, "stopped": 3, "all": 4} {
			cfg := mailConfig(25)
			cfg.Reports.CustomerReports = mode
			msgs, err := Daily(context.Background(), src, cfg, nil, base, now, now)
			if err != nil || len(msgs) != want {
				t.Fatalf("%s: %d messages (%v), want %d", mode, len(msgs), err, want)
			}
		}
	})
}

// TestDailyReportsToResellers: each customer of a reseller with abuse
// contacts has its report mailed to them too (under customer_reports),
// besides the customer's own abuse contact and the provider's summary.
func TestDailyReportsToResellers(t *testing.T) {
	for _, tc := range []struct {
		mode string
		want []string
	}{
		{"all", []string{"postmaster@provider.example", "abuse@acme.example", "abuse@hostco.example", "noc@hostco.example", "abuse@hostco.example", "noc@hostco.example"}},
		{"stopped", []string{"postmaster@provider.example", "abuse@acme.example", "abuse@hostco.example", "noc@hostco.example"}},
		{"none", []string{"postmaster@provider.example"}},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			cfg := mailConfig(25)
			cfg.Reports.CustomerReports = tc.mode
			cfg.Customers = cfg.Customers[:1] // acme (abuse contact, something stopped)
			cfg.Customers[0].Reseller = "hostco"
			cfg.Customers = append(cfg.Customers, config.Customer{ID: "calm", Reseller: "hostco"}, config.Customer{ID: "loner", Reseller: "silent"})
			cfg.Resellers = []config.Reseller{{ID: "hostco", AbuseContacts: []string{"abuse@hostco.example", "noc@hostco.example"}}, {ID: "silent"}}
			now := base.Add(3 * time.Hour)
			msgs, err := Daily(context.Background(), recorded(t), cfg, standing, base, now, now)
			if err != nil {
				t.Fatal(err)
			}
			var to []string
			for _, m := range msgs {
				to = append(to, m.To)
				if strings.HasSuffix(m.To, "@hostco.example") && !strings.Contains(m.Subject, "(reseller hostco)") {
					t.Errorf("reseller's copy subject %q", m.Subject)
				}
				if strings.Contains(m.Subject, "reseller") && m.Report.Customer == "" {
					t.Errorf("reseller's copy is the provider's summary: %q", m.Subject)
				}
			}
			if strings.Join(to, " ") != strings.Join(tc.want, " ") {
				t.Fatalf("mailed %v, want %v", to, tc.want)
			}
		})
	}
}
