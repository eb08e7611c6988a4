package e2e

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aupguard/aupguard/internal/checks/optout"
	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/customer"
	"github.com/aupguard/aupguard/internal/testkit/fakedns"
	"github.com/aupguard/aupguard/internal/testkit/gwtest"
)

// localConfig: two hosting customers whose sites run as the Unix users
// www-data (acme) and backup (beta) on the MTA host, and a provider-owned
// "system" customer for unattributed local mail (root's cron). BINDING,
// UNATTRIBUTED and KEYFILE are replaced per test.
const localConfig = `
log: {format: json}
chain: [sender_identity, header_forgery, rate_limit, dkim_sign]
provider:
  hostnames: [mta1.provider.test]
local_submission:
  sender_binding: BINDING
  unattributed: UNATTRIBUTED
customers:
  - id: acme
    local_users: [www-data]
    domains: [acme.example]
    limits: {messages_per_minute: 4}
    dkim:
      - {domain: acme.example, selector: gw, key_file: KEYFILE}
  - id: beta
    local_users: [backup]
    domains: [beta.example]
  - id: system
    domains: [mta1.provider.test]
    limits: {messages_per_minute: 100}
`

// phpMsg is what PHP's mail() hands to sendmail -t -i: the script's
// headers, no Date or Message-ID (Postfix adds them for local mail).
func phpMsg(from, to, subject string) []byte {
	return []byte(fmt.Sprintf("To: %s\nSubject: %s\nFrom: Web Shop <%s>\nX-PHP-Originating-Script: 33:contact.php\nMIME-Version: 1.0\nContent-Type: text/plain; charset=UTF-8\n\nThank you for your order.\n", to, subject, from))
}

// startLocal starts gateway + Postfix for local submission and returns
// them with the gateway's config. With bind,
// Postfix binds each Unix login to its customer's senders with
// local_login_sender_maps, from the table "aupguard postfix-senders"
// prints, plus root = *.
func startLocal(t *testing.T, bind bool, unattributed string) (*gwtest.Env, *fakedns.Server, string) {
	t.Helper()
	gwKey, keyFile := gatewayKey(t, "acme.pem")
	fake := fakedns.Start(t, `gw._domainkey.acme.example. TXT `+dkimTXT(t, gwKey.Public()))
	binding := config.SenderBindingNone
	if bind {
		binding = config.SenderBindingPostfix
	}
	cfgText := strings.NewReplacer("BINDING", binding, "UNATTRIBUTED", unattributed, "KEYFILE", keyFile).Replace(localConfig)
	extra := map[string]string{}
	if bind {
		// The table must be readable by postdrop running as the user:
		// not under t.TempDir (0700).
		dir, err := os.MkdirTemp("", "aupg-senders-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		os.Chmod(dir, 0o755)
		cfgFile := filepath.Join(dir, "aupguard.yaml")
		if err := os.WriteFile(cfgFile, []byte(cfgText), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg, err := config.Load(cfgFile, config.Options{})
		if err != nil {
			t.Fatal(err)
		}
		table := filepath.Join(dir, "aupguard-senders")
		if err := os.WriteFile(table, []byte(customer.PostfixSenderMap(cfg)), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("local_login_sender_maps table:\n%s", customer.PostfixSenderMap(cfg))
		extra["local_login_sender_maps"] = "inline:{ { root = * }, { postfix = * } }, texthash:" + table
	}
	env := gwtest.Start(t, gwtest.Options{Config: cfgText, ExtraMainCF: extra})
	return env, fake, cfgText
}

// localDecision returns the first decision logged after index before for
// the envelope sender domain dom at stage, waiting up to timeout.
func localDecision(env *gwtest.Env, before int, stage, dom string, timeout time.Duration) map[string]any {
	deadline := time.Now().Add(timeout)
	for {
		ds := env.Decisions()
		for _, d := range ds[min(before, len(ds)):] {
			if d["stage"] == stage && d["from_domain"] == dom {
				return d
			}
		}
		if time.Now().After(deadline) {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// noBounce fails when Postfix bounced anything after the first logFrom
// bytes of its log, or a bounce reached the sink.
func noBounce(t *testing.T, env *gwtest.Env, logFrom int) {
	t.Helper()
	if log := env.Postfix.Log(); strings.Contains(log[min(logFrom, len(log)):], "status=bounced") {
		t.Errorf("Postfix bounced a message:\n%s", log[logFrom:])
	}
	for _, m := range env.Sink.Messages() {
		if m.From == "" {
			t.Errorf("a bounce reached the sink:\n%s", m.Data)
		}
	}
}

// TestLocalSubmissionBoundThroughPostfix: mail injected with the private
// Postfix's sendmail -C as the Unix users of two customers and as root,
// through pickup and non_smtpd_milters, with Postfix binding the envelope
// sender to the login (local_login_sender_maps).
func TestLocalSubmissionBoundThroughPostfix(t *testing.T) {
	env, fake, cfgText := startLocal(t, true, "system")
	pf := env.Postfix

	t.Run("PHP mail() of a customer is attributed, counted and signed", func(t *testing.T) {
		env.Sink.Reset()
		before := len(env.Decisions())
		out, err := pf.SendmailAs("www-data", []string{"-t", "-i", "-f", "shop@acme.example"}, phpMsg("shop@acme.example", "buyer@example.net", "order 1"))
		if err != nil {
			t.Fatalf("sendmail: %v %s", err, out)
		}
		got, err := env.Sink.WaitFor(1, 20*time.Second)
		if err != nil {
			t.Fatalf("%v\n%s\n%s", err, pf.Log(), env.Log())
		}
		data := got[0].Data
		if got[0].From != "shop@acme.example" || !strings.Contains(string(data), "(Postfix, from userid 33)") {
			t.Errorf("not the local submission of uid 33: from=%q\n%s", got[0].From, data)
		}
		vs := verifyAt(t, fake.Addr(), data)
		if len(vs) != 1 || vs[0].Err != nil || vs[0].Domain != "acme.example" {
			t.Fatalf("no valid acme.example signature at the sink (%d verifications):\n%s", len(vs), data)
		}
		// Postfix adds Date: and Message-ID: to local mail before the
		// milter sees it, so the signature covers them.
		for _, h := range []string{"From", "To", "Subject", "Date", "Message-ID"} {
			if !containsFold(vs[0].HeaderKeys, h) {
				t.Errorf("signature does not cover %s: h=%v", h, vs[0].HeaderKeys)
			}
		}
		d := localDecision(env, before, "eom", "acme.example", 10*time.Second)
		if d == nil || d["customer"] != "acme" || d["by"] != customer.ByLocalSender || d["client"] != "127.0.0.1" || d["effective"] != "accept" {
			t.Fatalf("eom decision %v\n%s", d, env.Log())
		}
	})

	t.Run("sendmail without -f: the login's own address, attributed by login", func(t *testing.T) {
		env.Sink.Reset()
		before := len(env.Decisions())
		if out, err := pf.SendmailAs("www-data", []string{"-t", "-i"}, phpMsg("shop@acme.example", "buyer@example.net", "order 2")); err != nil {
			t.Fatalf("sendmail: %v %s", err, out)
		}
		got, err := env.Sink.WaitFor(1, 20*time.Second)
		if err != nil {
			t.Fatalf("%v\n%s", err, env.Log())
		}
		if got[0].From != "www-data@mta1.provider.test" {
			t.Errorf("envelope sender %q", got[0].From)
		}
		d := localDecision(env, before, "eom", "mta1.provider.test", 10*time.Second)
		if d == nil || d["customer"] != "acme" || d["by"] != customer.ByLocalLogin {
			t.Fatalf("eom decision %v\n%s", d, env.Log())
		}
	})

	t.Run("sendmail -bs (Symfony Mailer's default) is attributed and its trace field is not a forgery", func(t *testing.T) {
		env.Sink.Reset()
		before := len(env.Decisions())
		dlg := "EHLO app\r\nMAIL FROM:<shop@acme.example>\r\nRCPT TO:<buyer@example.net>\r\nDATA\r\n" +
			"From: Web Shop <shop@acme.example>\r\nTo: buyer@example.net\r\nSubject: via -bs\r\n\r\nThanks.\r\n.\r\nQUIT\r\n"
		out, err := pf.SendmailAs("www-data", []string{"-bs"}, []byte(dlg))
		if err != nil || !strings.Contains(out, "250 2.0.0 Ok: queued") {
			t.Fatalf("sendmail -bs: %v\n%s", err, out)
		}
		got, err := env.Sink.WaitFor(1, 20*time.Second)
		if err != nil {
			t.Fatalf("%v\n%s\n%s", err, pf.Log(), env.Log())
		}
		if !strings.Contains(string(got[0].Data), "(localhost [127.0.0.1])") {
			t.Errorf("no stand-alone smtpd trace field:\n%s", got[0].Data)
		}
		d := localDecision(env, before, "eom", "acme.example", 10*time.Second)
		if d == nil || d["customer"] != "acme" || d["effective"] != "accept" {
			t.Fatalf("eom decision %v\n%s", d, env.Log())
		}
	})

	t.Run("another customer's sender: Postfix's binding refuses it at submission", func(t *testing.T) {
		env.Sink.Reset()
		before := len(env.Decisions())
		out, err := pf.SendmailAs("www-data", []string{"-t", "-i", "-f", "billing@beta.example"}, phpMsg("billing@beta.example", "victim@example.net", "pay now"))
		if err == nil {
			t.Fatalf("sendmail accepted a sender of another customer: %s", out)
		}
		t.Logf("sendmail as www-data -f billing@beta.example: %v", err)
		if !strings.Contains(out, "not allowed") && !strings.Contains(out, "beta.example") {
			t.Errorf("sendmail's error does not say why: %q", out)
		}
		// sendmail's postdrop leaves an incomplete maildrop file (no
		// execute bit) that pickup never takes in: nothing reaches cleanup.
		pf.KickPickup()
		time.Sleep(time.Second)
		if d := localDecision(env, before, "mail", "beta.example", time.Second); d != nil {
			t.Errorf("the milter saw it: %v", d)
		}
		if len(env.Sink.Messages()) != 0 {
			t.Error("delivered")
		}
	})

	t.Run("a forged provider Received: line is refused", func(t *testing.T) {
		env.Sink.Reset()
		before := len(env.Decisions())
		msg := append([]byte("Received: by mta1.provider.test (Postfix, from userid 0)\n"), phpMsg("shop@acme.example", "buyer@example.net", "forged trace")...)
		if out, err := pf.SendmailAs("www-data", []string{"-t", "-i", "-f", "shop@acme.example"}, msg); err != nil {
			t.Fatalf("sendmail: %v %s", err, out)
		}
		d := localDecision(env, before, "eom", "acme.example", 10*time.Second)
		if d == nil || d["customer"] != "acme" || d["check"] != "header_forgery" || d["effective"] != "reject" {
			t.Fatalf("eom decision %v\n%s", d, env.Log())
		}
		// Refused local mail bounces to its sender (Postfix cannot answer
		// sendmail otherwise): wait for that bounce here, so that it cannot
		// land in a later subtest's sink.
		msgs, err := env.Sink.WaitFor(1, 20*time.Second)
		if err != nil {
			t.Fatalf("the refusal's bounce: %v\n%s", err, pf.Log())
		}
		if !bytes.Contains(msgs[0].Data, []byte("Undelivered Mail Returned to Sender")) {
			t.Fatalf("the sink got something else than the bounce:\n%s", msgs[0].Data)
		}
		env.Sink.Reset()
	})

	t.Run("root's cron mail goes to the system customer", func(t *testing.T) {
		env.Sink.Reset()
		before := len(env.Decisions())
		cron := []byte("From: root (Cron Daemon)\nTo: ops@example.net\nSubject: Cron <root@mta1> run-parts /etc/cron.daily\n\nall done\n")
		if out, err := pf.SendmailAs("root", []string{"-i", "-FCronDaemon", "-oem", "-oi", "ops@example.net"}, cron); err != nil {
			t.Fatalf("sendmail: %v %s", err, out)
		}
		if _, err := env.Sink.WaitFor(1, 20*time.Second); err != nil {
			t.Fatalf("%v\n%s\n%s", err, pf.Log(), env.Log())
		}
		d := localDecision(env, before, "eom", "mta1.provider.test", 10*time.Second)
		if d == nil || d["customer"] != "system" || d["by"] != customer.ByLocalUnattributed || d["effective"] != "accept" {
			t.Fatalf("eom decision %v\n%s", d, env.Log())
		}
	})

	t.Run("a burst from one customer hits its rate limit with 4xx and nothing bounces", func(t *testing.T) {
		env.Sink.Reset()
		logFrom := len(pf.Log())
		// acme already sent 3 messages this minute and one refused; its
		// limit is 4 a minute. Send 6 more.
		before := len(env.Decisions())
		for i := range 6 {
			if out, err := pf.SendmailAs("www-data", []string{"-t", "-i", "-f", "shop@acme.example"}, phpMsg("shop@acme.example", fmt.Sprintf("buyer%d@example.net", i), fmt.Sprintf("burst %d", i))); err != nil {
				t.Fatalf("sendmail %d: %v %s", i, err, out)
			}
		}
		var deferred int
		deadline := time.Now().Add(20 * time.Second)
		for deferred < 4 && time.Now().Before(deadline) {
			deferred = 0
			ds := env.Decisions()
			for _, d := range ds[min(before, len(ds)):] {
				if d["customer"] == "acme" && d["finding"] == "rate_limit_exceeded" && d["effective"] == "defer" {
					deferred++
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
		if deferred < 4 {
			t.Fatalf("%d deferrals logged, want at least 4\n%s", deferred, env.Log())
		}
		line, err := pf.WaitLog("milter-reject: MAIL from localhost[127.0.0.1]: 4.7.1", 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("Postfix: %s", line)
		time.Sleep(time.Second)
		n, err := pf.MaildropLen()
		if err != nil {
			t.Fatal(err)
		}
		// The limit refills one message every 15 s: at most 2 of the 6 go.
		// (There are more deferral lines than deferred messages: pickup
		// retries every deferred maildrop file each time it scans, which
		// every new submission triggers.)
		// Every burst message not delivered is waiting (nothing lost); a
		// file an earlier subtest left deferred may wait beside them, as
		// pickup scans on its own schedule.
		if got := len(env.Sink.Messages()); got > 2 || n < 6-got {
			t.Errorf("%d of the burst delivered, %d waiting in maildrop, %d deferrals; want at most 2 delivered and every other one waiting\n%s", got, n, deferred, pf.Log())
		}
		noBounce(t, env, logFrom)

		// Deferred, not lost: with the limit raised, pickup's next scan
		// delivers them.
		cfg := strings.Replace(mustRead(t, env.ConfigPath), "messages_per_minute: 4", "messages_per_minute: 1000", 1)
		if err := env.Reload(cfg); err != nil {
			t.Fatal(err)
		}
		pf.KickPickup()
		if _, err := env.Sink.WaitFor(6, 30*time.Second); err != nil {
			t.Fatalf("%v\n%s", err, pf.Log())
		}
		noBounce(t, env, logFrom)
	})

	t.Run("deferrals: hold puts over-limit local mail on hold, without pickup's retries", func(t *testing.T) {
		cfg := strings.Replace(cfgText, "  unattributed: system\n", "  unattributed: system\n  deferrals: hold\n", 1)
		if cfg == cfgText {
			t.Fatal("config not changed")
		}
		if err := env.Reload(cfg); err != nil {
			t.Fatal(err)
		}
		env.Sink.Reset()
		logFrom := len(pf.Log())
		before := len(env.Decisions())
		for i := range 3 {
			if out, err := pf.SendmailAs("www-data", []string{"-t", "-i", "-f", "shop@acme.example"}, phpMsg("shop@acme.example", fmt.Sprintf("held%d@example.net", i), fmt.Sprintf("held %d", i))); err != nil {
				t.Fatalf("sendmail %d: %v %s", i, err, out)
			}
		}
		var held []string
		deadline := time.Now().Add(20 * time.Second)
		for len(held) < 3 && time.Now().Before(deadline) {
			held = held[:0]
			for _, m := range pf.Queue() {
				if m.QueueName == "hold" {
					held = append(held, m.QueueID)
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
		if len(held) != 3 {
			t.Fatalf("%d message(s) on hold, want 3\n%s\n%s", len(held), pf.Log()[logFrom:], env.Log())
		}
		time.Sleep(time.Second)
		n := 0
		ds := env.Decisions()
		for _, d := range ds[before:] {
			if d["finding"] == "rate_limit_exceeded" && d["stage"] == "mail" {
				n++
			}
		}
		if n != 3 {
			t.Errorf("%d MAIL-stage rate_limit_exceeded decisions for 3 messages, want 3 (no retries)", n)
		}
		if md, _ := pf.MaildropLen(); md != 0 || len(env.Sink.Messages()) != 0 {
			t.Errorf("maildrop %d, delivered %d; want 0, 0", md, len(env.Sink.Messages()))
		}
		if n := strings.Count(pf.Log()[logFrom:], "milter-hold: END-OF-MESSAGE from localhost[127.0.0.1]: milter triggers HOLD action"); n != 3 {
			t.Errorf("%d milter-hold lines, want 3:\n%s", n, pf.Log()[logFrom:])
		}
		noBounce(t, env, logFrom)
	})
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestLocalSubmissionUnboundThroughPostfix: without Postfix's sender
// binding the envelope sender of local mail proves nothing, so no local
// mail is attributed to a customer. By default (no local_submission in the
// config) it is deferred: it waits in the maildrop queue and nothing
// bounces. With unattributed: system it is the system customer's, whose
// sender_identity refuses another customer's sender (and Postfix bounces
// non-SMTP mail a milter rejects); with unattributed: reject, Postfix
// bounces it too.
func TestLocalSubmissionUnboundThroughPostfix(t *testing.T) {
	env, _, base := startLocal(t, false, "system")
	pf := env.Postfix
	// The defaults: no local_submission section, no system customer.
	var lines []string
	for l := range strings.Lines(withoutSystem(base)) {
		if !strings.Contains(l, "sender_binding:") && !strings.Contains(l, "unattributed:") && !strings.HasPrefix(l, "local_submission:") {
			lines = append(lines, l)
		}
	}
	if err := env.Reload(strings.Join(lines, "")); err != nil {
		t.Fatal(err)
	}
	logFrom := len(pf.Log())

	t.Run("default: unattributed local mail is deferred and nothing bounces", func(t *testing.T) {
		before := len(env.Decisions())
		if out, err := pf.SendmailAs("www-data", []string{"-t", "-i", "-f", "shop@acme.example"}, phpMsg("shop@acme.example", "buyer@example.net", "unbound")); err != nil {
			t.Fatalf("sendmail: %v %s", err, out)
		}
		d := localDecision(env, before, "mail", "acme.example", 10*time.Second)
		if d == nil || d["finding"] != "unattributed_local" || d["effective"] != "defer" || d["code"] != float64(451) {
			t.Fatalf("decision %v\n%s", d, env.Log())
		}
		if _, err := pf.WaitLog("milter-reject: MAIL from localhost[127.0.0.1]: 4.7.1 Local sender not attributed", 10*time.Second); err != nil {
			t.Fatal(err)
		}
		time.Sleep(500 * time.Millisecond)
		if n, _ := pf.MaildropLen(); n != 1 {
			t.Errorf("%d message(s) in maildrop, want the deferred one", n)
		}
		if len(env.Sink.Messages()) != 0 {
			t.Error("delivered")
		}
		noBounce(t, env, logFrom)
	})

	t.Run("unattributed: system; another customer's sender is refused", func(t *testing.T) {
		if err := env.Reload(base); err != nil {
			t.Fatal(err)
		}
		env.Sink.Reset()
		// The message deferred above is retried and is now the system
		// customer's, whose domains do not include acme.example.
		before := len(env.Decisions())
		if out, err := pf.SendmailAs("www-data", []string{"-t", "-i", "-f", "billing@beta.example"}, phpMsg("billing@beta.example", "victim@example.net", "pay now")); err != nil {
			t.Fatalf("sendmail: %v %s", err, out)
		}
		d := localDecision(env, before, "mail", "beta.example", 10*time.Second)
		if d == nil || d["customer"] != "system" || d["finding"] != "mail_from_domain_not_owned" || d["effective"] != "reject" {
			t.Fatalf("decision %v\n%s", d, env.Log())
		}
		// Postfix bounces non-SMTP mail that a milter rejects, to the
		// envelope sender (here the claimed one).
		line, err := pf.WaitLog("to=<victim@example.net>, relay=none", 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(line, "dsn=5.7.1, status=bounced") {
			t.Errorf("not bounced: %s", line)
		}
		t.Logf("Postfix: %s", line)

		before = len(env.Decisions())
		cron := []byte("From: root (Cron Daemon)\nTo: ops@example.net\nSubject: Cron <root@mta1> backup\n\ndone\n")
		if out, err := pf.SendmailAs("root", []string{"-i", "ops@example.net"}, cron); err != nil {
			t.Fatalf("sendmail: %v %s", err, out)
		}
		d = localDecision(env, before, "eom", "mta1.provider.test", 10*time.Second)
		if d == nil || d["customer"] != "system" || d["effective"] != "accept" {
			t.Fatalf("cron decision %v\n%s", d, env.Log())
		}
	})

	t.Run("unattributed: reject", func(t *testing.T) {
		cfg := strings.Replace(withoutSystem(base), "unattributed: system", "unattributed: reject", 1)
		if cfg == base {
			t.Fatalf("no unattributed: system in\n%s", base)
		}
		if err := env.Reload(cfg); err != nil {
			t.Fatal(err)
		}
		before := len(env.Decisions())
		if out, err := pf.SendmailAs("root", []string{"-i", "ops@example.net"}, []byte("Subject: cron\n\nx\n")); err != nil {
			t.Fatalf("sendmail: %v %s", err, out)
		}
		d := localDecision(env, before, "mail", "mta1.provider.test", 10*time.Second)
		if d == nil || d["finding"] != "unattributed_local" || d["effective"] != "reject" || d["code"] != float64(550) {
			t.Fatalf("decision %v\n%s", d, env.Log())
		}
	})
}

// withoutSystem cuts the system customer (the last one) from a config
// made from localConfig.
func withoutSystem(cfg string) string {
	if i := strings.Index(cfg, "  - id: system"); i >= 0 {
		return cfg[:i]
	}
	return cfg
}

// TestLocalSubmissionOptOutThroughPostfix: the opt-out and bulk rules
// apply to a PHP newsletter sent with sendmail as to SMTP mail: the
// gateway adds the one-click unsubscribe link, and after the recipient
// used it, the next local message to that recipient is refused for that
// recipient, while the other recipient still gets it.
func TestLocalSubmissionOptOutThroughPostfix(t *testing.T) {
	store := filepath.Join(t.TempDir(), "store")
	cfg := `
log: {format: json}
store: {backend: memory, path: ` + store + `}
chain: [sender_identity, optout_suppression, bulk_mail, feedback_stamp, unsubscribe_link]
provider: {hostnames: [mta1.provider.test]}
local_submission: {sender_binding: postfix}
optout:
  unsubscribe:
    base_url: https://unsub.provider.example/u/
customers:
  - id: acme
    local_users: [www-data]
    domains: [acme.example]
    unsubscribe: add
`
	env := gwtest.Start(t, gwtest.Options{Config: cfg})
	pf := env.Postfix
	d := env.Daemon.Deps()
	h, err := optout.NewUnsubscribeHandler(optout.APIDeps{Store: d.Store, Config: d.Config, Secret: d.Secret, Logger: d.Logger, Clock: d.Clock})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()

	news := []byte("To: alice@example.org\nSubject: weekly offers\nFrom: Acme Shop <news@acme.example>\nPrecedence: bulk\n\nOur offers.\n")
	if out, err := pf.SendmailAs("www-data", []string{"-t", "-i", "-f", "news@acme.example"}, news); err != nil {
		t.Fatalf("sendmail: %v %s", err, out)
	}
	got, err := env.Sink.WaitFor(1, 20*time.Second)
	if err != nil {
		t.Fatalf("%v\n%s", err, env.Log())
	}
	m, err := mail.ReadMessage(bytes.NewReader(got[0].Data))
	if err != nil {
		t.Fatal(err)
	}
	lu := m.Header.Get("List-Unsubscribe")
	if m.Header.Get("List-Unsubscribe-Post") != "List-Unsubscribe=One-Click" || !strings.HasPrefix(lu, "<https://unsub.provider.example/u/") {
		t.Fatalf("one-click headers not added to local bulk mail:\n%s", got[0].Data)
	}
	u, _ := url.Parse(strings.Trim(lu, "<>"))
	resp, err := http.Post(srv.URL+u.Path, "application/x-www-form-urlencoded", strings.NewReader("List-Unsubscribe=One-Click"))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("one-click POST: %v %v", resp, err)
	}
	resp.Body.Close()

	env.Sink.Reset()
	logFrom := len(pf.Log())
	before := len(env.Decisions())
	note := []byte("To: alice@example.org, bob@example.org\nSubject: order shipped\nFrom: Acme Shop <news@acme.example>\n\nShipped.\n")
	if out, err := pf.SendmailAs("www-data", []string{"-t", "-i", "-f", "news@acme.example"}, note); err != nil {
		t.Fatalf("sendmail: %v %s", err, out)
	}
	dec := localDecision(env, before, "rcpt", "acme.example", 10*time.Second)
	if dec == nil || dec["finding"] != "recipient_opted_out" && !strings.Contains(fmt.Sprint(dec["finding"]), "opt") {
		t.Fatalf("no opt-out decision at RCPT: %v\n%s", dec, env.Log())
	}
	// Postfix cannot refuse one recipient of non-SMTP mail (cleanup calls
	// a milter's RCPT refusal a configuration error and keeps the whole
	// message in maildrop): the gateway removes the opted-out recipient at
	// end of message, and the others get the message.
	got, err = env.Sink.WaitFor(1, 20*time.Second)
	if err != nil {
		t.Fatalf("%v\n%s", err, pf.Log()[logFrom:])
	}
	if strings.Join(got[0].To, ",") != "bob@example.org" {
		t.Fatalf("delivered to %v, want only bob", got[0].To)
	}
	if err := pf.WaitQueueEmpty(10 * time.Second); err != nil {
		t.Error(err)
	}
	if log := pf.Log()[logFrom:]; strings.Contains(log, "milter configuration error") || strings.Contains(log, "status=bounced") {
		t.Errorf("Postfix:\n%s", log)
	}

	// Every recipient opted out: the message is refused, and Postfix
	// bounces non-SMTP mail a milter refuses to its sender, who learns why.
	env.Sink.Reset()
	if out, err := pf.SendmailAs("www-data", []string{"-t", "-i", "-f", "news@acme.example"}, news); err != nil {
		t.Fatalf("sendmail: %v %s", err, out)
	}
	line, err := pf.WaitLog("to=<alice@example.org>, relay=none", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(line, "status=bounced") || !strings.Contains(line, "opted out") {
		t.Errorf("want a bounce naming the opt-out: %s", line)
	}
	bounces, err := env.Sink.WaitFor(1, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if bounces[0].From != "" || strings.Join(bounces[0].To, ",") != "news@acme.example" {
		t.Errorf("bounce from %q to %v", bounces[0].From, bounces[0].To)
	}
}
