package report

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/textproto"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/setup"
	"github.com/aupguard/aupguard/internal/secrets"
)

// Message is one report to mail.
type Message struct {
	To      string
	Subject string
	Report  *Report
	// Text is the body of a message without a report (a notification).
	Text string
}

// Daily builds the messages of `aupguard report -mail` for the period: the
// provider-wide report to provider.postmaster, and to each customer's
// abuse_contact its own report (as reports.customer_reports says).
func Daily(ctx context.Context, src Source, cfg *config.Config, standing StandingFunc, since, until, now time.Time) ([]Message, error) {
	return DailyWithReputation(ctx, src, cfg, standing, nil, since, until, now)
}

// DailyWithReputation is Daily with the bounce standings and blocklist
// states (rep) in the reports.
func DailyWithReputation(ctx context.Context, src Source, cfg *config.Config, standing StandingFunc, rep ReputationFunc, since, until, now time.Time) ([]Message, error) {
	return DailyWithSections(ctx, src, cfg, standing, rep, nil, since, until, now)
}

// DailyWithSections is DailyWithReputation with the families' report
// sections in the reports.
func DailyWithSections(ctx context.Context, src Source, cfg *config.Config, standing StandingFunc, rep ReputationFunc, sections []setup.ReportSection, since, until, now time.Time) ([]Message, error) {
	var msgs []Message
	prefix := cfg.Reports.SubjectPrefix
	if pm := cfg.Provider.Postmaster; pm != "" {
		r, err := Build(ctx, src, Options{Since: since, Until: until, Config: cfg, Top: cfg.Reports.Top, Standing: standing, Now: now, Reputation: rep, Sections: sections})
		if err != nil {
			return nil, err
		}
		subj := fmt.Sprintf("%s daily summary %s: %d messages, %d stopped", prefix, r.Period(), r.Totals.Messages, r.Totals.Stopped())
		msgs = append(msgs, Message{To: pm, Subject: subj, Report: r})
	}
	if cfg.Reports.CustomerReports == "none" {
		return msgs, nil
	}
	for _, c := range cfg.Customers {
		res := cfg.Reseller(c.Reseller)
		if res != nil && len(res.AbuseContacts) == 0 {
			res = nil
		}
		if c.AbuseContact == "" && res == nil {
			continue
		}
		r, err := Build(ctx, src, Options{Since: since, Until: until, Customer: c.ID, Config: cfg, Top: cfg.Reports.Top, Standing: standing, Now: now, Reputation: rep, Sections: sections})
		if err != nil {
			return nil, err
		}
		// Customers see their own figures only; the provider's notes
		// (store errors) are not theirs.
		r.Errors = nil
		if cfg.Reports.CustomerReports == "stopped" && !r.Stopped() {
			continue
		}
		subj := fmt.Sprintf("%s mail policy report for %s, %s: %d messages, %d stopped", prefix, c.ID, r.Period(), r.Totals.Messages, r.Totals.Stopped())
		if c.AbuseContact != "" {
			msgs = append(msgs, Message{To: c.AbuseContact, Subject: subj, Report: r})
		}
		if res != nil {
			// The reseller gets each of its customers' reports too
			// (resellers[].abuse_contacts), under the same rule.
			rs := fmt.Sprintf("%s mail policy report for %s (reseller %s), %s: %d messages, %d stopped", prefix, c.ID, res.ID, r.Period(), r.Totals.Messages, r.Totals.Stopped())
			for _, to := range res.AbuseContacts {
				msgs = append(msgs, Message{To: to, Subject: rs, Report: r})
			}
		}
	}
	return msgs, nil
}

// Compose renders a report mail: multipart/alternative with the text
// report first and the HTML report last (RFC 2046 §5.1.4: the preferred,
// richest alternative last), marked Auto-Submitted (RFC 3834 §5).
func Compose(from string, m Message, date time.Time, host string) ([]byte, error) {
	var text, page bytes.Buffer
	if m.Report == nil {
		text.WriteString(m.Text)
	} else {
		if err := m.Report.WriteText(&text); err != nil {
			return nil, err
		}
		if err := m.Report.WriteHTML(&page, HTMLOptions{}); err != nil {
			return nil, err
		}
	}
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	// RFC 5322 §3.6: Date and From are required; Message-ID should be there.
	hdr := []string{
		"From: " + (&mail.Address{Name: "aupguard", Address: from}).String(),
		"To: " + m.To,
		"Subject: " + mime.QEncoding.Encode("utf-8", m.Subject),
		"Date: " + date.Format(time.RFC1123Z),
		"Message-ID: <" + randomID() + "@" + host + ">",
		"MIME-Version: 1.0",
		"Auto-Submitted: auto-generated",
		"Content-Type: multipart/alternative; boundary=\"" + mw.Boundary() + "\"",
	}
	for _, h := range hdr {
		if strings.ContainsAny(h, "\r\n") {
			return nil, fmt.Errorf("report mail: header %q has a line break", h)
		}
		b.WriteString(h + "\r\n")
	}
	b.WriteString("\r\n")
	for _, part := range []struct {
		ctype string
		body  []byte
	}{{"text/plain; charset=utf-8", text.Bytes()}, {"text/html; charset=utf-8", page.Bytes()}} {
		if part.ctype != "text/plain; charset=utf-8" && m.Report == nil {
			continue // a notification is plain text only
		}
		w, err := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {part.ctype}, "Content-Transfer-Encoding": {"quoted-printable"}})
		if err != nil {
			return nil, err
		}
		// RFC 2045 §6.7: quoted-printable keeps lines under 76 characters
		// (RFC 5322 §2.1.1's 998 limit is never hit).
		qw := quotedprintable.NewWriter(w)
		if _, err := qw.Write(bytes.ReplaceAll(part.body, []byte("\n"), []byte("\r\n"))); err != nil {
			return nil, err
		}
		if err := qw.Close(); err != nil {
			return nil, err
		}
	}
	if err := mw.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func randomID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Mailer sends report mails through the reports.smtp relay.
type Mailer struct {
	SMTP config.ReportSMTP
	// From is the sender (reports.smtp.from, else provider.postmaster).
	From string
	// TLSConfig overrides the TLS settings (tests: a private CA).
	TLSConfig *tls.Config
	// Secret, when set, stamps every mail's envelope id (DSN ENVID, when
	// the relay offers DSN) with secrets.ProviderStamp, so that a relay
	// running aupguard with the same secret knows the gateway's own mail
	// and does not refuse it as an unidentified client's.
	Secret secrets.Key
}

// send runs one SMTP transaction: MAIL FROM (stamped), RCPT TO, DATA.
func (m *Mailer) send(c *smtp.Client, to string, data []byte, now time.Time) error {
	opts := &smtp.MailOptions{}
	if !isASCII(m.From) || !isASCII(to) {
		opts.UTF8 = true
	}
	if len(m.Secret) > 0 {
		opts.EnvelopeID = m.Secret.ProviderStamp(m.From, now)
	}
	if err := c.Mail(m.From, opts); err != nil {
		return err
	}
	if err := c.Rcpt(to, nil); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(data); err != nil {
		w.Close()
		return err
	}
	return w.Close()
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// NewMailer returns the mailer cfg describes.
func NewMailer(cfg *config.Config) (*Mailer, error) {
	from := cfg.Reports.SMTP.From
	if from == "" {
		from = cfg.Provider.Postmaster
	}
	if from == "" {
		return nil, errors.New("reports.smtp.from and provider.postmaster are both empty: no sender for report mail")
	}
	if a, err := mail.ParseAddress(from); err == nil {
		from = a.Address
	}
	return &Mailer{SMTP: cfg.Reports.SMTP, From: from}, nil
}

// Send sends the messages in one SMTP session. It stops at the first
// failure and reports how many were sent.
func (m *Mailer) Send(ctx context.Context, msgs []Message, now time.Time) (sent int, err error) {
	if len(msgs) == 0 {
		return 0, nil
	}
	c, err := m.dial(ctx)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	host := m.SMTP.Helo
	if host == "" {
		host, _ = os.Hostname()
	}
	if host == "" {
		host = "localhost"
	}
	for _, msg := range msgs {
		to, err := mail.ParseAddress(msg.To)
		if err != nil {
			return sent, fmt.Errorf("report mail to %q: %w", msg.To, err)
		}
		data, err := Compose(m.From, msg, now, host)
		if err != nil {
			return sent, err
		}
		if err := m.send(c, to.Address, data, now); err != nil {
			return sent, fmt.Errorf("report mail to %s: %w", to.Address, err)
		}
		sent++
	}
	return sent, c.Quit()
}

func (m *Mailer) tlsConfig() *tls.Config {
	if m.TLSConfig != nil {
		return m.TLSConfig
	}
	return &tls.Config{ServerName: m.SMTP.Host, MinVersion: tls.VersionTLS12}
}

// dial connects, secures (as reports.smtp.tls says), greets and
// authenticates.
func (m *Mailer) dial(ctx context.Context) (*smtp.Client, error) {
	s := m.SMTP
	addr := net.JoinHostPort(s.Host, strconv.Itoa(s.Port))
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = config.DefaultReportSMTPTimeout
	}
	connect := func() (net.Conn, error) {
		d := net.Dialer{Timeout: timeout}
		if s.TLS == "tls" {
			td := tls.Dialer{NetDialer: &d, Config: m.tlsConfig()}
			return td.DialContext(ctx, "tcp", addr)
		}
		return d.DialContext(ctx, "tcp", addr)
	}
	conn, err := connect()
	if err != nil {
		return nil, fmt.Errorf("report relay %s: %w", addr, err)
	}
	var c *smtp.Client
	switch s.TLS {
	case "starttls", "opportunistic":
		// RFC 3207 §4: STARTTLS after EHLO, then EHLO again.
		c, err = smtp.NewClientStartTLS(conn, m.tlsConfig())
		if err != nil && s.TLS == "opportunistic" && strings.Contains(err.Error(), "support STARTTLS") {
			if conn, err = connect(); err != nil {
				return nil, fmt.Errorf("report relay %s: %w", addr, err)
			}
			c, err = smtp.NewClient(conn), nil
		}
		if err != nil {
			return nil, fmt.Errorf("report relay %s: STARTTLS: %w", addr, err)
		}
	default:
		c = smtp.NewClient(conn)
	}
	c.CommandTimeout, c.SubmissionTimeout = timeout, timeout
	if s.Helo != "" {
		if err := c.Hello(s.Helo); err != nil {
			c.Close()
			return nil, fmt.Errorf("report relay %s: EHLO: %w", addr, err)
		}
	}
	if s.Username != "" {
		pw, err := os.ReadFile(s.PasswordFile)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("reports.smtp.password_file: %w", err)
		}
		// RFC 4616 PLAIN; config validation keeps it off clear remote links.
		if err := c.Auth(sasl.NewPlainClient("", s.Username, strings.TrimSpace(string(pw)))); err != nil {
			c.Close()
			return nil, fmt.Errorf("report relay %s: AUTH: %w", addr, err)
		}
	}
	return c, nil
}

// SendText sends one plain-text notice (a blocklist listing, say) to one
// address through the reports relay, marked Auto-Submitted (RFC 3834 §5)
// like the reports.
func (m *Mailer) SendText(ctx context.Context, to, subject, body string, now time.Time) error {
	rcpt, err := mail.ParseAddress(to)
	if err != nil {
		return fmt.Errorf("notice mail to %q: %w", to, err)
	}
	host := m.SMTP.Helo
	if host == "" {
		host, _ = os.Hostname()
	}
	if host == "" {
		host = "localhost"
	}
	hdr := []string{
		"From: " + (&mail.Address{Name: "aupguard", Address: m.From}).String(),
		"To: " + rcpt.String(),
		"Subject: " + mime.QEncoding.Encode("utf-8", subject),
		"Date: " + now.Format(time.RFC1123Z),
		"Message-ID: <" + randomID() + "@" + host + ">",
		"MIME-Version: 1.0",
		"Auto-Submitted: auto-generated",
		"Content-Type: text/plain; charset=utf-8",
		"Content-Transfer-Encoding: quoted-printable",
	}
	var b bytes.Buffer
	for _, h := range hdr {
		if strings.ContainsAny(h, "\r\n") {
			return fmt.Errorf("notice mail: header %q has a line break", h)
		}
		b.WriteString(h + "\r\n")
	}
	b.WriteString("\r\n")
	qw := quotedprintable.NewWriter(&b)
	if _, err := qw.Write([]byte(strings.ReplaceAll(strings.ReplaceAll(body, "\r\n", "\n"), "\n", "\r\n"))); err != nil {
		return err
	}
	if err := qw.Close(); err != nil {
		return err
	}
	c, err := m.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := m.send(c, rcpt.Address, b.Bytes(), now); err != nil {
		return fmt.Errorf("notice mail to %s: %w", rcpt.Address, err)
	}
	return c.Quit()
}
