package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aupguard/aupguard/internal/checks/auth"
	"github.com/aupguard/aupguard/internal/checks/optout"
	"github.com/aupguard/aupguard/internal/testkit/fakedns"
	"github.com/aupguard/aupguard/internal/testkit/gwtest"
	"github.com/aupguard/aupguard/internal/testkit/testenv"
)

// edgesConfig: two customers, every identity and opt-out check, the
// memory store; Postfix opens the queue file at MAIL so that RCPT
// decisions carry the queue id (configs/postfix/main.cf).
func edgesConfig(storeDir string) string {
	return `
log: {format: json}
store: {backend: memory, path: ` + storeDir + `}
chain: [sender_identity, optout_suppression, bulk_mail, feedback_stamp, unsubscribe_link]
optout:
  unsubscribe:
    base_url: https://unsub.provider.example/u/
    token_ttl: 720h
customers:
  - id: acme
    networks: [127.0.0.5/32]
    domains: [acme.example]
    unsubscribe: add
  - id: beta
    networks: [127.0.0.6/32]
    domains: [beta.example]
`
}

func acmeMsg(extra, to string) []byte {
	return []byte(fmt.Sprintf("%sFrom: News <news@acme.example>\r\nTo: %s\r\nSubject: acme news\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <%d@acme.example>\r\n\r\nHello from acme.\r\n", extra, to, time.Now().UnixNano()))
}

// rawHeader returns the raw lines of the header fields named name in a
// delivered message, as they are on the wire.
func rawHeaders(data []byte, name string) []string {
	var out []string
	head, _, _ := bytes.Cut(data, []byte("\r\n\r\n"))
	for _, l := range strings.Split(string(head), "\r\n") {
		if n, _, ok := strings.Cut(l, ":"); ok && strings.EqualFold(n, name) {
			out = append(out, l)
		}
	}
	return out
}

// arfFor builds an ARF report (RFC 5965) whose third part is the header
// section of data without the fields named in strip.
func arfFor(data []byte, rcpt string, strip ...string) []byte {
	head, _, _ := bytes.Cut(data, []byte("\r\n\r\n"))
	var kept []string
	skip := false
	for _, l := range strings.Split(string(head), "\r\n") {
		if l != "" && (l[0] == ' ' || l[0] == '\t') {
			if !skip {
				kept = append(kept, l)
			}
			continue
		}
		skip = false
		for _, s := range strip {
			if n, _, _ := strings.Cut(l, ":"); strings.EqualFold(n, s) {
				skip = true
			}
		}
		if !skip {
			kept = append(kept, l)
		}
	}
	return []byte("From: fbl@isp.example\r\nTo: abuse@provider.example\r\nSubject: FW: report\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/report; report-type=feedback-report; boundary=ARF\r\n\r\n" +
		"--ARF\r\nContent-Type: text/plain\r\n\r\nThis is an abuse report.\r\n" +
		"--ARF\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\nUser-Agent: isp-fbl/1.0\r\nVersion: 1\r\nOriginal-Rcpt-To: <" + rcpt + ">\r\n\r\n" +
		"--ARF\r\nContent-Type: text/rfc822-headers\r\n\r\n" + strings.Join(kept, "\r\n") + "\r\n\r\n--ARF--\r\n")
}

// TestIdentityFieldsThroughPostfix, through the private Postfix and the sink: a client's Feedback-ID naming another
// customer (and a copied X-AUP-Customer stamp) never leaves the gateway,
// the gateway's own Feedback-ID is the only one and a complaint is
// attributed by it to the real sender; Resent-From / Resent-Sender follow
// the From / Sender ownership rule; added fields are written "Name: value".
func TestIdentityFieldsThroughPostfix(t *testing.T) {
	env := gwtest.Start(t, gwtest.Options{Config: edgesConfig(filepath.Join(t.TempDir(), "store"))})
	d := env.Daemon.Deps()
	svc, err := optout.NewService(d.Store, d.Config, d.Secret, d.Clock, d.Logger)
	if err != nil {
		t.Fatal(err)
	}

	// A genuine stamp of beta, as a customer could copy it from mail of beta.
	betaStamp := optout.Stamp(d.Secret, "beta", "BETA1", "carol@mailbox.example", time.Now())
	var framed []byte
	t.Run("client Feedback-ID and stamp naming another customer are replaced", func(t *testing.T) {
		env.Sink.Reset()
		extra := "Feedback-ID: beta:aupguard\r\nX-AUP-Customer: " + betaStamp + "\r\nFeedback-ID: x:beta:" + strings.Repeat("0", 12) + ":aupguard\r\n"
		r := env.Send(testenv.SendOptions{LocalAddr: "127.0.0.5", From: "news@acme.example", To: []string{"carol@mailbox.example"}, Data: acmeMsg(extra, "carol@mailbox.example")})
		if !r.Delivered() {
			t.Fatalf("not delivered: %s", r)
		}
		got, err := env.Sink.WaitFor(1, 20*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		framed = got[0].Data
		fb := rawHeaders(framed, "Feedback-ID")
		if len(fb) != 1 {
			t.Fatalf("want exactly the gateway's Feedback-ID, got %q\n%s", fb, framed)
		}
		want := "Feedback-ID: " + optout.FeedbackID(d.Secret, "", "acme", "aupguard")
		if fb[0] != want {
			t.Fatalf("Feedback-ID %q, want %q", fb[0], want)
		}
		st := rawHeaders(framed, optout.StampHeader)
		if len(st) != 1 || !strings.HasPrefix(st[0], optout.StampHeader+": c=acme; ") {
			t.Fatalf("want only the gateway's stamp for acme, written \"Name: value\", got %q", st)
		}
		if c, err := optout.ParseStamp(d.Secret, strings.TrimPrefix(st[0], optout.StampHeader+":")); err != nil || c != "acme" {
			t.Fatalf("stamp %q: %v %q", st[0], err, c)
		}
		if bytes.Contains(framed, []byte("beta")) {
			t.Fatalf("something naming beta left the gateway:\n%s", framed)
		}
	})

	t.Run("ARF round trip attributes by the gateway's Feedback-ID only", func(t *testing.T) {
		// The stamp is stripped, as the receiver did: only the
		// Feedback-ID is left, which names the customer but no message or
		// recipient, so the complaint is attributed and refused.
		res, err := svc.Complaint(context.Background(), bytes.NewReader(arfFor(framed, "carol@mailbox.example", optout.StampHeader)))
		if !errors.Is(err, optout.ErrRefused) || res.Counted {
			t.Fatalf("Feedback-ID-only complaint: %+v, %v; want refused (it binds no recipient)", res, err)
		}
		if res.Customer != "acme" || res.CustomerBy != "feedback_id" {
			t.Fatalf("complaint attributed to %s by %s, want acme by feedback_id", res.Customer, res.CustomerBy)
		}
		// With the gateway's stamp, as delivered, it counts for acme.
		res, err = svc.Complaint(context.Background(), bytes.NewReader(arfFor(framed, "carol@mailbox.example")))
		if err != nil || !res.Counted || res.Customer != "acme" || res.BoundBy != "stamp" {
			t.Fatalf("stamped complaint: %+v, %v; want counted for acme, bound by the stamp", res, err)
		}
		if e, ok, err := svc.Check(context.Background(), "beta", "carol@mailbox.example"); err != nil || ok {
			t.Fatalf("beta got the suppression: %+v %v %v", e, ok, err)
		}
		// The framing message as the client wrote it, had it reached a
		// receiver: its Feedback-ID names beta but is not the gateway's.
		forged := acmeMsg("Feedback-ID: beta:aupguard\r\n", "dave@mailbox.example")
		if res, err := svc.Complaint(context.Background(), bytes.NewReader(arfFor(forged, "dave@mailbox.example"))); err == nil && res.Customer == "beta" {
			t.Fatalf("a client-written Feedback-ID framed beta: %+v", res)
		}
		if _, ok, _ := svc.Check(context.Background(), "beta", "dave@mailbox.example"); ok {
			t.Fatal("beta got a suppression from a client-written Feedback-ID")
		}
	})

	t.Run("customer's own well-formed Feedback-ID keeps its campaign", func(t *testing.T) {
		env.Sink.Reset()
		r := env.Send(testenv.SendOptions{LocalAddr: "127.0.0.5", From: "news@acme.example", To: []string{"erin@mailbox.example"},
			Data: acmeMsg("Feedback-ID: spring26:newsletter:acme-esp\r\n", "erin@mailbox.example")})
		if !r.Delivered() {
			t.Fatalf("not delivered: %s", r)
		}
		got, err := env.Sink.WaitFor(1, 20*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		fb := rawHeaders(got[0].Data, "Feedback-ID")
		want := "Feedback-ID: " + optout.FeedbackID(d.Secret, "spring26", "acme", "aupguard")
		if len(fb) != 1 || fb[0] != want {
			t.Fatalf("Feedback-ID %q, want [%q]", fb, want)
		}
	})

	for _, tt := range []struct{ name, extra, finding string }{
		{"Resent-From of another domain", "Resent-From: boss@beta.example\r\nResent-Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n", "resent_from_domain_not_owned"},
		{"Resent-Sender of another domain", "Resent-From: a@acme.example\r\nResent-Sender: ops@beta.example\r\n", "resent_sender_domain_not_owned"},
		{"Resent-From display-name impersonation", "Resent-From: \"ceo@beta.example\" <a@acme.example>\r\n", "display_name_impersonation"},
		{"Resent-From with two authors and no Resent-Sender", "Resent-From: a@acme.example, b@acme.example\r\n", "resent_sender_missing"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			env.Sink.Reset()
			before := len(env.Decisions())
			r := env.Send(testenv.SendOptions{LocalAddr: "127.0.0.5", From: "news@acme.example", To: []string{"bob@example.org"}, Data: acmeMsg(tt.extra, "bob@example.org")})
			if r.Delivered() || r.EndOfData == nil || r.EndOfData.Code != 550 || r.EndOfData.EnhancedCode != "5.7.1" {
				t.Fatalf("want 550 5.7.1 at end of data, got %s", r)
			}
			found := false
			for _, dd := range env.WaitDecisions(before+1, 5*time.Second)[before:] {
				found = found || strings.Contains(fmt.Sprint(dd["findings"]), "sender_identity/"+tt.finding)
			}
			if !found {
				t.Fatalf("no sender_identity/%s finding:\n%s", tt.finding, env.Log())
			}
		})
	}
	t.Run("own Resent-From passes", func(t *testing.T) {
		env.Sink.Reset()
		r := env.Send(testenv.SendOptions{LocalAddr: "127.0.0.5", From: "news@acme.example", To: []string{"bob@example.org"},
			Data: acmeMsg("Resent-From: Ops <ops@acme.example>\r\nResent-Sender: relay@acme.example\r\n", "bob@example.org")})
		if !r.Delivered() {
			t.Fatalf("own Resent-From refused: %s", r)
		}
		if _, err := env.Sink.WaitFor(1, 20*time.Second); err != nil {
			t.Fatal(err)
		}
	})
}

// TestOptOutEdgesThroughPostfix: one
// canonical address for the API, the unsubscribe endpoint and suppression
// at RCPT through Postfix; unknown lists refused by the API; the RFC 8058
// one-click POST body; the queue id and the one recipient hash on RCPT
// decisions.
func TestOptOutEdgesThroughPostfix(t *testing.T) {
	env := gwtest.Start(t, gwtest.Options{Config: edgesConfig(filepath.Join(t.TempDir(), "store")),
		ExtraMainCF: map[string]string{"smtpd_delay_open_until_valid_rcpt": "no"}})
	d := env.Daemon.Deps()
	deps := optout.APIDeps{Store: d.Store, Config: d.Config, Secret: d.Secret, Logger: d.Logger, Clock: d.Clock}
	apiH, err := optout.NewAPI(deps)
	if err != nil {
		t.Fatal(err)
	}
	api := httptest.NewServer(apiH)
	defer api.Close()
	unsubH, err := optout.NewUnsubscribeHandler(deps)
	if err != nil {
		t.Fatal(err)
	}
	unsub := httptest.NewServer(unsubH)
	defer unsub.Close()
	svc, err := optout.NewService(d.Store, d.Config, d.Secret, d.Clock, d.Logger)
	if err != nil {
		t.Fatal(err)
	}
	postJSON := func(body string) (int, string) {
		resp, err := http.Post(api.URL+"/api/optouts", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	t.Run("unknown list is an error naming the known ones", func(t *testing.T) {
		code, body := postJSON(`{"list":"nosuchcustomer","address":"x@dest.example"}`)
		if code != 400 || !strings.Contains(body, "acme") || !strings.Contains(body, "beta") || !strings.Contains(body, "*") {
			t.Fatalf("unknown list: %d %s, want 400 naming acme, beta and *", code, body)
		}
		if _, ok, _ := svc.Check(context.Background(), "*", "x@dest.example"); ok {
			t.Fatal("recorded on some list")
		}
	})

	t.Run("quoted local part is the same recipient", func(t *testing.T) {
		if code, body := postJSON(`{"list":"acme","address":"x@dest.example"}`); code != 201 {
			t.Fatalf("add: %d %s", code, body)
		}
		// The API answers 200 "already there" for every other spelling.
		for _, a := range []string{`\"x\"@dest.example`, `X@DEST.EXAMPLE.`, `x+promo@dest.example`} {
			if code, body := postJSON(`{"list":"acme","address":"` + a + `"}`); code != 200 || !strings.Contains(body, `"added": false`) {
				t.Errorf("%s: %d %s, want 200 already listed", a, code, body)
			}
		}
		before := len(env.Decisions())
		r := env.Send(testenv.SendOptions{LocalAddr: "127.0.0.5", From: "news@acme.example",
			To: []string{`"x"@dest.example`, `"x+tag"@Dest.Example`, "y@dest.example"}, Data: acmeMsg("", "team@dest.example")})
		if len(r.Rcpts) != 3 || r.Rcpts[0].Code != 550 || r.Rcpts[1].Code != 550 || !r.Rcpts[2].OK() {
			t.Fatalf("want the two spellings of x refused and y accepted: %s", r)
		}
		// The RCPT decisions carry the queue id and the same
		// keyed hash that `optout check` and the finding show.
		e, ok, err := svc.Check(context.Background(), "acme", "x@dest.example")
		if err != nil || !ok {
			t.Fatalf("check: %v %v", ok, err)
		}
		n := 0
		for _, dd := range env.WaitDecisions(before+2, 5*time.Second)[before:] {
			if dd["stage"] != "rcpt" {
				continue
			}
			n++
			if q, _ := dd["queue_id"].(string); q == "" {
				t.Errorf("RCPT decision without queue id: %v", dd)
			}
			if dd["rcpt_hash"] != e.Hash || !strings.Contains(fmt.Sprint(dd["detail"]), e.Hash) {
				t.Errorf("RCPT decision rcpt_hash %v / detail %v, want the optout hash %s", dd["rcpt_hash"], dd["detail"], e.Hash)
			}
		}
		if n != 2 {
			t.Fatalf("%d RCPT decisions, want 2:\n%s", n, env.Log())
		}
		got, err := env.Sink.WaitFor(1, 20*time.Second)
		if err != nil || strings.Join(got[0].To, ",") != "y@dest.example" {
			t.Fatalf("sink: %v %v, want only y", got, err)
		}
	})

	// A bulk message to one recipient gets the gateway's one-click link.
	env.Sink.Reset()
	bulk := func(to string) []byte {
		return []byte(fmt.Sprintf("From: news@acme.example\r\nTo: %s\r\nSubject: offers\r\nPrecedence: bulk\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <%d@acme.example>\r\n\r\nOffers.\r\n", to, time.Now().UnixNano()))
	}
	r := env.Send(testenv.SendOptions{LocalAddr: "127.0.0.5", From: "news@acme.example", To: []string{`"Quoted"@dest.example`}, Data: bulk("quoted@dest.example")})
	if !r.Delivered() {
		t.Fatalf("bulk not delivered: %s", r)
	}
	got, err := env.Sink.WaitFor(1, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	m, err := mail.ReadMessage(bytes.NewReader(got[0].Data))
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(strings.Trim(m.Header.Get("List-Unsubscribe"), "<>"))
	if err != nil || u.Path == "" {
		t.Fatalf("no link: %q", m.Header.Get("List-Unsubscribe"))
	}
	if lu := rawHeaders(got[0].Data, "List-Unsubscribe-Post"); len(lu) != 1 || lu[0] != "List-Unsubscribe-Post: List-Unsubscribe=One-Click" {
		t.Errorf("List-Unsubscribe-Post written as %q", lu)
	}
	post := func(ct string, body io.Reader) (int, string) {
		resp, err := http.Post(unsub.URL+u.Path, ct, body)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	listed := func() bool {
		_, ok, err := svc.Check(context.Background(), "acme", "quoted@dest.example")
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	t.Run("RFC 8058 POST bodies other than the one-click are refused", func(t *testing.T) {
		for _, tt := range []struct {
			name, ct string
			body     io.Reader
		}{
			{"empty", "application/x-www-form-urlencoded", strings.NewReader("")},
			{"other value", "application/x-www-form-urlencoded", strings.NewReader("List-Unsubscribe=Yes")},
			{"extra field", "application/x-www-form-urlencoded", strings.NewReader("List-Unsubscribe=One-Click&x=1")},
			{"json", "application/json", strings.NewReader(`{"List-Unsubscribe":"One-Click"}`)},
			{"text", "text/plain", strings.NewReader("List-Unsubscribe=One-Click")},
			{"10 MB", "application/x-www-form-urlencoded", io.MultiReader(strings.NewReader("List-Unsubscribe=One-Click&pad="), bytes.NewReader(bytes.Repeat([]byte("a"), 10<<20)))},
		} {
			if code, _ := post(tt.ct, tt.body); code != 400 {
				t.Errorf("%s: %d, want 400", tt.name, code)
			}
		}
		if listed() {
			t.Fatal("a POST without the one-click body recorded an opt-out")
		}
	})
	t.Run("multipart one-click POST records the canonical address", func(t *testing.T) {
		var b bytes.Buffer
		mw := multipart.NewWriter(&b)
		_ = mw.WriteField("List-Unsubscribe", "One-Click")
		_ = mw.Close()
		if code, body := post(mw.FormDataContentType(), &b); code != 200 {
			t.Fatalf("multipart one-click: %d %s", code, body)
		}
		if !listed() {
			t.Fatal("not recorded under the canonical address")
		}
		r := env.Send(testenv.SendOptions{LocalAddr: "127.0.0.5", From: "news@acme.example", To: []string{"QUOTED@dest.example"}, Data: acmeMsg("", "quoted@dest.example")})
		if len(r.Rcpts) != 1 || r.Rcpts[0].Code != 550 {
			t.Fatalf("unsubscribed recipient not refused: %s", r)
		}
	})
	t.Run("links expire no earlier than their ttl and the page says what works", func(t *testing.T) {
		oc, err := optout.ConfigOf(d.Config)
		if err != nil {
			t.Fatal(err)
		}
		ttl := oc.Unsubscribe.TokenTTL
		now := time.Now()
		// Issued 30 s less than ttl ago: the minute it is stored in may
		// have begun earlier, yet the link must still work.
		fresh := optout.NewToken(d.Secret, "acme", "late@dest.example", now.Add(-ttl+30*time.Second))
		resp, err := http.Get(unsub.URL + "/u/" + fresh)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("link within its ttl: %d", resp.StatusCode)
		}
		old := optout.NewToken(d.Secret, "acme", "late@dest.example", now.Add(-ttl-2*time.Minute))
		resp, err = http.Post(unsub.URL+"/u/"+old, "application/x-www-form-urlencoded", strings.NewReader("List-Unsubscribe=One-Click"))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body := string(b)
		if resp.StatusCode != http.StatusGone || !strings.Contains(body, "What still works") || !strings.Contains(body, "more recent message") {
			t.Fatalf("expired link: %d %s", resp.StatusCode, body)
		}
		if _, ok, _ := svc.Check(context.Background(), "acme", "late@dest.example"); ok {
			t.Fatal("expired link recorded an opt-out")
		}
	})
}

// TestDMARCEdgesThroughPostfix, through Postfix
// with the fake DNS: null-sender mail is judged on the provider's HELO, not
// the customer's; several DMARC records mean no policy; a failed DMARC
// lookup defers only mail whose outcome the record could change.
func TestDMARCEdgesThroughPostfix(t *testing.T) {
	zone := strings.Join([]string{
		// The customer's HELO name authorises the provider's egress: a
		// receiver never sees it, so it must not make a bounce pass.
		`helo.bounce.example. TXT "v=spf1 ip4:192.0.2.10 -all"`,
		`_dmarc.bounce.example. TXT "v=DMARC1; p=reject"`,
		`mta.provider.test. TXT "v=spf1 ip4:192.0.2.10 -all"`,
		// Two records: no policy, whatever order DNS returns them in.
		`multi.example. TXT "v=spf1 -all"`,
		`_dmarc.multi.example. TXT "v=DMARC1; p=reject"`,
		`_dmarc.multi.example. TXT "v=DMARC1; p=none"`,
		// DMARC lookups fail; SPF passes for exactly the From domain.
		`exact.example. TXT "v=spf1 ip4:192.0.2.10 -all"`,
		`_dmarc.exact.example. SERVFAIL`,
		// DMARC lookups fail; SPF passes only for a subdomain: a strict
		// record would fail it, so the lookup matters.
		`mail.relaxed.example. TXT "v=spf1 ip4:192.0.2.10 -all"`,
		`_dmarc.relaxed.example. SERVFAIL`,
	}, "\n")
	fake := fakedns.Start(t, zone)
	cfg := strings.ReplaceAll(`
log: {format: json}
chain: [spf, dkim, dmarc]
dns: {servers: ["DNSADDR"], timeout: 1s}
provider:
  egress_ips: [192.0.2.10]
  helo_name: mta.provider.test
customers:
  - id: webhost
    networks: [127.0.0.5/32]
    domains: [bounce.example, multi.example, exact.example, relaxed.example, mail.relaxed.example]
`, "DNSADDR", fake.Addr())
	env := gwtest.Start(t, gwtest.Options{Config: cfg})
	send := func(helo, from, hdrFrom string) *testenv.SMTPResult {
		env.Sink.Reset()
		return env.Send(testenv.SendOptions{LocalAddr: "127.0.0.5", Helo: helo, From: from, To: []string{"bob@example.org"}, Data: authMsg(hdrFrom, "dmarc edges")})
	}
	lastEOM := func() map[string]any {
		ds := env.WaitDecisions(1, 5*time.Second)
		for i := len(ds) - 1; i >= 0; i-- {
			if ds[i]["stage"] == "eom" {
				return ds[i]
			}
		}
		return nil
	}

	t.Run("null sender is judged on the provider's HELO", func(t *testing.T) {
		r := send("helo.bounce.example", "", "mailer-daemon@bounce.example")
		if r.Delivered() || r.EndOfData == nil || r.EndOfData.Code != 550 || r.EndOfData.EnhancedCode != "5.7.26" {
			t.Fatalf("bounce from a p=reject domain without aligned DKIM: want 550 5.7.26, got %s\n%s", r, env.Log())
		}
	})
	t.Run("several DMARC records mean no policy", func(t *testing.T) {
		for i := 0; i < 4; i++ {
			r := send("client.test", "news@multi.example", "news@multi.example")
			if !r.Delivered() {
				t.Fatalf("run %d: refused although no DMARC policy applies: %s", i, r)
			}
			dd := lastEOM()
			if dd == nil || !strings.Contains(fmt.Sprint(dd["findings"]), "dmarc/dmarc_no_record") {
				t.Fatalf("run %d: want dmarc_no_record, got %v", i, dd)
			}
		}
		// The record lookup itself says why no policy applies, through the
		// gateway's own resolver.
		rec, err := auth.LookupRecord(context.Background(), env.Daemon.Deps().Resolver, "multi.example", time.Second)
		if err != nil || rec == nil || rec.Policy != "" || !strings.Contains(rec.Note, "2 DMARC records at _dmarc.multi.example") {
			t.Errorf("LookupRecord(multi.example) = %+v, %v", rec, err)
		}
	})
	t.Run("failed lookup does not defer mail that passes under any record", func(t *testing.T) {
		if r := send("client.test", "news@exact.example", "news@exact.example"); !r.Delivered() {
			t.Fatalf("SPF pass for exactly the From domain deferred on a DMARC SERVFAIL: %s", r)
		}
	})
	t.Run("failed lookup defers mail the record could refuse", func(t *testing.T) {
		r := send("client.test", "news@mail.relaxed.example", "news@relaxed.example")
		if r.Delivered() || r.EndOfData == nil || r.EndOfData.Code != 451 || r.EndOfData.EnhancedCode != "4.4.3" {
			t.Fatalf("want 451 4.4.3, got %s", r)
		}
	})
}
