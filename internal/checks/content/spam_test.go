package content

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/aupguard/aupguard/internal/engine/policy"
	"github.com/aupguard/aupguard/internal/mailaddr"
	"github.com/aupguard/aupguard/internal/testkit/testenv"
)

// spamToken in a Subject makes the test rule score 20; spamUser as the
// authenticated user (the customer id) makes it score 7 (a hold).
const (
	spamToken = "AUPGUARD-SPAM-TOKEN"
	holdUser  = "holdme"
)

// testRules are the private rspamd's only rules: deterministic scores from
// the Subject and from the User header the gateway sends (proving the
// metadata reaches rspamd).
const testRules = `
rspamd_config:register_symbol{
  name = 'AUPGUARD_TEST_SPAM', score = 20.0,
  callback = function(task)
    local s = task:get_subject()
    return s ~= nil and s:find('` + spamToken + `', 1, true) ~= nil
  end
}
rspamd_config:register_symbol{
  name = 'AUPGUARD_TEST_HOLD', score = 7.0,
  callback = function(task)
    local u = task:get_user()
    local ip = task:get_from_ip()
    return u == '` + holdUser + `' and ip ~= nil and ip:is_valid() and tostring(ip):sub(1, 4) == '127.'
  end
}
`

func startRspamd(t *testing.T) *testenv.Rspamd {
	t.Helper()
	return testenv.StartRspamd(t, testenv.RspamdOptions{Lua: testRules})
}

func spamCfg(url string) *Config {
	c := DefaultConfig()
	c.Rspamd.URL = url
	c.Rspamd.Timeout = 5 * time.Second
	return c
}

func subjectMsg(subject, body string) message {
	m := plainMsg(body)
	m.headers[2].Value = " " + subject
	return m
}

func scanSpam(s *SpamScore, m message, customer string) ([]policy.Finding, error) {
	t := txnFor(m)
	t.Customer.ID = customer
	t.Conn.ClientAddr = netip.MustParseAddr("127.0.0.5")
	t.Conn.Helo = "client.test"
	t.MailFrom, _ = mailaddr.Parse("a@acme.example")
	rc, _ := mailaddr.Parse("b@mailbox.example")
	t.Rcpts = []*policy.Rcpt{{Addr: rc}}
	feed(t, m, 4096, s)
	f, err := s.EOM(context.Background(), t)
	s.Finish(context.Background(), t, err == nil && len(f) == 0)
	return f, err
}

func TestSpamScoreFromRealRspamd(t *testing.T) {
	rs := startRspamd(t)
	lenient := 30.0
	cfg := spamCfg(rs.URL())
	cfg.Customers = map[string]CustomerConfig{"lenient": {SpamReject: &lenient}}
	s := NewSpamScore(cfg, sysClock, nil)
	cases := []struct {
		name, customer, subject string
		want                    string
	}{
		{"clean message passes", "acme", "quarterly report", ""},
		{"test token scores 20: reject", "acme", "win " + spamToken, FindingSpamReject},
		{"customer's own reject threshold: same score is a hold", "lenient", "win " + spamToken, FindingSpamHold},
		{"metadata reaches rspamd: user and IP score 7, a hold", holdUser, "quarterly report", FindingSpamHold},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f, err := scanSpam(s, subjectMsg(c.subject, strings.Repeat("Some ordinary text.\r\n", 200)), c.customer)
			if err != nil {
				t.Fatalf("error: %v\nrspamd log:\n%s", err, rs.Log())
			}
			got := ""
			if len(f) > 0 {
				got = f[0].Name
			}
			if got != c.want {
				t.Fatalf("finding %q, want %q (%+v)", got, c.want, f)
			}
			if got != "" && (f[0].Attrs["score"] == "" || !strings.Contains(f[0].Attrs["symbols"], "AUPGUARD_TEST_")) {
				t.Errorf("finding lacks the score or symbols: %+v", f[0].Attrs)
			}
		})
	}
	t.Run("aborted messages give their slot back", func(t *testing.T) {
		cfg := spamCfg(rs.URL())
		cfg.Rspamd.MaxConcurrent = 1
		one := NewSpamScore(cfg, sysClock, nil)
		for range 3 {
			tx := txnFor(plainMsg("x"))
			w := one.Body(tx)
			_, _ = w.Write([]byte("part of a body\r\n"))
			one.Finish(context.Background(), tx, false) // aborted before EOM
		}
		// With one slot, the next message scans only if the aborted ones
		// gave theirs back.
		if _, err := scanSpam(one, subjectMsg("hi", "x\r\n"), "acme"); err != nil {
			t.Fatalf("after aborted messages: %v", err)
		}
		if one.br.isOpen() {
			t.Error("aborted messages opened the breaker")
		}
	})
	if n := len(s.slots); n != 0 {
		t.Errorf("%d scanning slots still held", n)
	}
}

func TestSpamScoreRspamdDownTempfailsThenRecovers(t *testing.T) {
	rs := startRspamd(t)
	s := NewSpamScore(spamCfg(rs.URL()), sysClock, nil)
	rs.Kill()
	_, err := scanSpam(s, subjectMsg("hi", "x\r\n"), "acme")
	var re policy.ReplyError
	if err == nil || !errors.As(err, &re) || re.Reply().Code() != 451 {
		t.Fatalf("rspamd down: err %v, want an error replying 451", err)
	}
	if !s.br.isOpen() {
		t.Fatal("breaker not open after rspamd failed")
	}
	if _, err := scanSpam(s, subjectMsg("hi", "x\r\n"), "acme"); !errors.Is(err, errCircuitOpen) {
		t.Fatalf("while open: %v, want the breaker's fail-fast", err)
	}
	rs.Start()
	deadline := time.Now().Add(10 * time.Second)
	for {
		f, err := scanSpam(s, subjectMsg(spamToken, "x\r\n"), "acme")
		if err == nil {
			if len(f) != 1 || f[0].Name != FindingSpamReject {
				t.Fatalf("after recovery: %+v", f)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rspamd back, scans still fail: %v", err)
		}
		time.Sleep(breakerMinBackoff)
	}
}

func TestSpamScoreOffAsksForNoBody(t *testing.T) {
	s := NewSpamScore(DefaultConfig(), sysClock, nil)
	tx := txnFor(plainMsg("x"))
	if s.Body(tx) != nil {
		t.Fatal("unconfigured spam_score asked for the body")
	}
	if f, err := s.EOM(context.Background(), tx); f != nil || err != nil {
		t.Fatalf("%v %v", f, err)
	}
}
