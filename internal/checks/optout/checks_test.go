package optout

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/policy"
	"github.com/aupguard/aupguard/internal/mailaddr"
	"github.com/aupguard/aupguard/internal/store"
	"github.com/aupguard/aupguard/internal/testkit/testenv"
)

func txn(cust string, rcpts ...string) *policy.Txn {
	c := &policy.Customer{ID: cust}
	for _, cu := range testCustomers {
		if cu.ID == cust {
			c.Settings = cu.Settings
		}
	}
	t := policy.NewTxn(&policy.Conn{}, c, "REF", t0)
	for _, r := range rcpts {
		a, _ := mailaddr.Parse(r)
		t.Rcpts = append(t.Rcpts, &policy.Rcpt{Addr: a})
	}
	return t
}

func TestSuppressionCheck(t *testing.T) {
	cfg := testConfig(t, "")
	for name, mk := range svcKinds(t, cfg, clock.NewFake(t0)) {
		t.Run(name, func(t *testing.T) {
			svc := mk(t)
			chain := policy.NewChain([]policy.Step{{Check: NewSuppression(svc), Enabled: true, OnError: policy.Defer}})
			if _, _, err := svc.Add(bg, "acme", "Opted.Out@Example.COM", SourceAPI, ""); err != nil {
				t.Fatal(err)
			}
			if _, _, err := svc.Add(bg, GlobalList, "trap@traps.example", SourceCLI, ""); err != nil {
				t.Fatal(err)
			}
			tests := []struct {
				cust, rcpt  string
				want        policy.Action
				finding     string
				reply       string
				escalations int
			}{
				{"acme", "ok@example.com", policy.Accept, "", "", 0},
				{"acme", "opted.out@example.com", policy.Reject, FindingOptedOut, "550 5.7.1 Recipient has opted out of mail from this sender", 0},
				{"acme", "OPTED.OUT@example.com", policy.Reject, FindingOptedOut, "550 5.7.1 Recipient has opted out of mail from this sender", 0},
				{"beta", "opted.out@example.com", policy.Accept, "", "", 0},
				{"beta", "trap@TRAPS.example", policy.Reject, FindingSuppressed, "550 5.7.1 Recipient does not accept mail from this sender", 0},
				// Third hit of acme within the window raises the flag.
				{"acme", "opted.out@example.com", policy.Reject, FindingOptedOut, "550 5.7.1 Recipient has opted out of mail from this sender", 1},
				{"acme", "opted.out@example.com", policy.Reject, FindingOptedOut, "550 5.7.1 Recipient has opted out of mail from this sender", 0},
			}
			for i, tt := range tests {
				t.Run(fmt.Sprintf("%d_%s_%s", i, tt.cust, tt.rcpt), func(t *testing.T) {
					tx := txn(tt.cust)
					a, _ := mailaddr.Parse(tt.rcpt)
					v := chain.Rcpt(bg, tx, &policy.Rcpt{Addr: a})
					if v.Action != tt.want || v.Finding != tt.finding || v.Reply.String() != tt.reply {
						t.Fatalf("verdict %v %q %q; want %v %q %q", v.Action, v.Finding, v.Reply, tt.want, tt.finding, tt.reply)
					}
					esc := 0
					for _, r := range v.Results {
						if r.Finding.Name == FindingEscalation {
							esc++
						}
						if strings.Contains(r.Finding.Detail, "@") {
							t.Fatalf("detail leaks an address: %q", r.Finding.Detail)
						}
					}
					if esc != tt.escalations {
						t.Fatalf("%d escalation findings, want %d", esc, tt.escalations)
					}
				})
			}
			if f, _ := svc.Backend.GetFlag(bg, "acme"); f == nil {
				t.Fatal("acme not flagged after 3 sends to an opted-out recipient")
			}
		})
	}
}

// body is a newsletter body long enough for a fingerprint.
const body = "Hello,\r\n\r\nThis is our weekly newsletter with many interesting offers.\r\nSee you next week.\r\n"

func header(t *policy.Txn, kv ...string) {
	for i := 0; i+1 < len(kv); i += 2 {
		t.Headers = append(t.Headers, policy.Header{Name: kv[i], Value: " " + kv[i+1]})
	}
}

func runEOM(chain *policy.Chain, t *policy.Txn, b string) policy.Verdict {
	for _, w := range chain.BodyWriters(t) {
		// Feed in small chunks, as a milter would.
		for i := 0; i < len(b); i += 7 {
			io.WriteString(w, b[i:min(i+7, len(b))])
		}
	}
	return chain.EOM(bg, t)
}

func TestBulkCheck(t *testing.T) {
	cfg := testConfig(t, "")
	clk := clock.NewFake(t0)
	type dkim struct{ aligned, known bool }
	oneClick := []string{"List-Unsubscribe", "<https://acme.example/u/1>, <mailto:u@acme.example>", "List-Unsubscribe-Post", "List-Unsubscribe=One-Click"}
	tests := []struct {
		name      string
		cust      string
		rcpts     int
		headers   []string
		dkim      dkim
		prep      func(svc *Service)
		want      policy.Action
		finding   string
		replyHas  string
		wantAdded bool
	}{
		{"not bulk", "beta", 1, []string{"Subject", "hi"}, dkim{false, true}, nil, policy.Accept, "", "", false},
		{"precedence bulk without headers", "beta", 1, []string{"Precedence", "bulk"}, dkim{true, true}, nil, policy.Reject, FindingMissingOneClick,
			"550 5.7.1 Bulk mail needs List-Unsubscribe with an https URI and List-Unsubscribe-Post: List-Unsubscribe=One-Click (RFC 8058)", false},
		{"list-id with mailto only", "beta", 1, []string{"List-Id", "<news.beta.example>", "List-Unsubscribe", "<mailto:x@beta.example>", "List-Unsubscribe-Post", "List-Unsubscribe=One-Click"}, dkim{true, true}, nil,
			policy.Reject, FindingMissingOneClick, "needs List-Unsubscribe with an https URI (RFC 8058)", false},
		{"https without post", "beta", 1, []string{"Precedence", "list", "List-Unsubscribe", "<https://beta.example/u>"}, dkim{true, true}, nil,
			policy.Reject, FindingMissingOneClick, "needs List-Unsubscribe-Post: List-Unsubscribe=One-Click (RFC 8058)", false},
		{"compliant", "beta", 1, append([]string{"Precedence", "bulk"}, oneClick...), dkim{true, true}, nil, policy.Accept, "", "", false},
		{"not aligned", "beta", 1, append([]string{"Precedence", "bulk"}, oneClick...), dkim{false, true}, nil, policy.Reject, FindingNotAligned, "550 5.7.1 Bulk mail must be DKIM-signed", false},
		{"alignment unknown is reported", "beta", 1, append([]string{"Precedence", "bulk"}, oneClick...), dkim{false, false}, nil, policy.Accept, "", "", false},
		{"gateway adds for one recipient", "acme", 1, []string{"Precedence", "bulk"}, dkim{true, true}, nil, policy.Accept, "", "", true},
		{"gateway cannot add for many", "acme", 3, []string{"Precedence", "bulk"}, dkim{true, true}, nil, policy.Reject, FindingMissingOneClick, "send one recipient per message", false},
		{"fingerprint makes bulk", "beta", 51, nil, dkim{true, true}, nil, policy.Reject, FindingMissingOneClick, "RFC 8058", false},
		{"below fingerprint threshold", "beta", 50, nil, dkim{true, true}, nil, policy.Accept, "", "", false},
		{"complaint rate high", "beta", 1, append([]string{"Precedence", "bulk"}, oneClick...), dkim{true, true}, func(svc *Service) {
			svc.Backend.Count(bg, "beta", KindDelivered, 1000, svc.Settings.Rate, t0)
			svc.Backend.Count(bg, "beta", KindComplaint, 4, svc.Settings.Rate, t0)
		}, policy.Defer, FindingRateHigh, "451 4.7.1 Bulk mail from this sender is suspended", false},
		{"complaint rate warn", "beta", 1, append([]string{"Precedence", "bulk"}, oneClick...), dkim{true, true}, func(svc *Service) {
			svc.Backend.Count(bg, "beta", KindDelivered, 1000, svc.Settings.Rate, t0)
			svc.Backend.Count(bg, "beta", KindComplaint, 2, svc.Settings.Rate, t0)
		}, policy.Accept, "", "", false},
		{"flagged customer reported", "beta", 1, append([]string{"Precedence", "bulk"}, oneClick...), dkim{true, true}, func(svc *Service) {
			svc.Backend.SetFlag(bg, "beta", Flag{Reason: "opted_out_sends", Since: t0})
		}, policy.Accept, "", "", false},
	}
	for name, mk := range svcKinds(t, cfg, clk) {
		t.Run(name, func(t *testing.T) {
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					svc := mk(t)
					if tt.prep != nil {
						tt.prep(svc)
					}
					aligned := func(*policy.Txn) (bool, bool) { return tt.dkim.aligned, tt.dkim.known }
					chain := policy.NewChain([]policy.Step{
						{Check: NewBulk(svc, aligned), Enabled: true, OnError: policy.Defer},
						{Check: NewStamper(svc), Enabled: true},
						{Check: NewUnsubscriber(svc), Enabled: true},
					})
					var rcpts []string
					for i := 0; i < tt.rcpts; i++ {
						rcpts = append(rcpts, fmt.Sprintf("r%d@example.org", i))
					}
					tx := txn(tt.cust, rcpts...)
					header(tx, tt.headers...)
					v := runEOM(chain, tx, body)
					if v.Action != tt.want || v.Finding != tt.finding || !strings.Contains(v.Reply.String(), tt.replyHas) {
						t.Fatalf("verdict %v %q %q; want %v %q containing %q (results %+v)", v.Action, v.Finding, v.Reply, tt.want, tt.finding, tt.replyHas, v.Results)
					}
					added := map[string]string{}
					for _, h := range tx.AddedHeaders() {
						added[h.Name] = h.Value
					}
					if v.Action.Decisive() {
						if len(added) != 0 {
							t.Fatalf("headers added to a refused message: %v", added)
						}
					} else {
						if c, err := ParseStamp(testKey, added[StampHeader]); err != nil || c != tt.cust {
							t.Fatalf("stamp %q → %q, %v", added[StampHeader], c, err)
						}
						if added["Feedback-ID"] != FeedbackID(testKey, "", tt.cust, "aupguard") {
							t.Fatalf("Feedback-ID = %q", added["Feedback-ID"])
						}
					}
					lu, ok := added["List-Unsubscribe"]
					if ok != tt.wantAdded {
						t.Fatalf("List-Unsubscribe added = %v (%q), want %v", ok, lu, tt.wantAdded)
					}
					if ok {
						tok, err := ParseToken(testKey, strings.TrimSuffix(strings.TrimPrefix(lu, "<"+testBase), ">"), 0, t0)
						if err != nil || tok.Customer != tt.cust || tok.Recipient != "r0@example.org" || added["List-Unsubscribe-Post"] != "List-Unsubscribe=One-Click" {
							t.Fatalf("added unsubscribe headers %q → %+v, %v", added, tok, err)
						}
					}
					wantNames := map[string]bool{}
					for _, r := range v.Results {
						wantNames[r.Finding.Name] = true
					}
					switch tt.name {
					case "complaint rate warn":
						if !wantNames[FindingRateWarn] {
							t.Fatalf("no %s in %+v", FindingRateWarn, v.Results)
						}
					case "flagged customer reported":
						if !wantNames[FindingFlagged] {
							t.Fatalf("no %s in %+v", FindingFlagged, v.Results)
						}
					case "alignment unknown is reported":
						if !wantNames[FindingDKIMUnknown] {
							t.Fatalf("no %s in %+v", FindingDKIMUnknown, v.Results)
						}
					}
				})
			}
		})
	}
}

func TestBulkFinishCountsDelivered(t *testing.T) {
	cfg := testConfig(t, "")
	clk := clock.NewFake(t0)
	for name, mk := range svcKinds(t, cfg, clk) {
		t.Run(name, func(t *testing.T) {
			svc := mk(t)
			chain := policy.NewChain([]policy.Step{{Check: NewBulk(svc, nil), Enabled: true}})
			// Delivered recipients are reserved at end of message and
			// given back when the message is not accepted.
			send := func(accepted bool, rcpts ...string) {
				tx := txn("acme", rcpts...)
				chain.EOM(bg, tx)
				chain.Finish(bg, tx, accepted)
			}
			send(true, "a@x.example", "b@x.example")
			send(false, "c@x.example")
			clk.Advance(time.Hour)
			send(true, "d@x.example")
			st, err := svc.Status(bg, "acme")
			if err != nil || st.Delivered != 3 {
				t.Fatalf("status %+v, %v; want 3 delivered", st, err)
			}
		})
	}
}

func TestFingerprintNormalisation(t *testing.T) {
	fp := func(s string) string {
		w := newFingerprint()
		io.WriteString(w, s)
		return w.sum()
	}
	base := "--b1\r\nContent-Type: text/plain\r\n\r\n" + body + "--b1--\r\n"
	tests := []struct {
		name string
		a, b string
		same bool
	}{
		{"other boundary", base, strings.ReplaceAll(base, "b1", "zz9"), true},
		{"case and spacing", body, strings.ToUpper(strings.ReplaceAll(body, " ", "  ")), true},
		{"other words", body, strings.Replace(body, "offers", "prices", 1), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if (fp(tt.a) == fp(tt.b)) != tt.same {
				t.Fatalf("fingerprints %s / %s, want same=%v", fp(tt.a), fp(tt.b), tt.same)
			}
		})
	}
	if fp("hi\r\n") != "" {
		t.Fatal("tiny body got a fingerprint")
	}
	long := strings.Repeat("x", 5000) + "\r\n"
	if fp(long) == "" || fp(long) == fp(long+long) {
		t.Fatal("long lines not fingerprinted")
	}
}

// TestStamperRemovesClientFields: a client's X-AUP-Customer and a
// Feedback-ID naming another customer or the provider's sender id are
// removed; a customer's own well-formed Feedback-ID keeps its campaign.
func TestStamperRemovesClientFields(t *testing.T) {
	cfg := testConfig(t, "")
	s, err := SettingsFromConfig(cfg, testKey)
	if err != nil {
		t.Fatal(err)
	}
	c := NewStamper(&Service{Settings: s, Config: cfg, Clock: clock.NewFake(time.Unix(1_800_000_000, 0))})
	for _, tt := range []struct {
		name, fb, want string
		removed        int
	}{
		{"other customer", "beta:aupguard", FeedbackID(testKey, "", "acme", "aupguard"), 2},
		{"other customer as campaign", "beta:x:esp", FeedbackID(testKey, "", "acme", "aupguard"), 2},
		{"own well-formed", "spring26:newsletter:acme-esp", FeedbackID(testKey, "spring26", "acme", "aupguard"), 2},
		{"malformed", "a b:c", FeedbackID(testKey, "", "acme", "aupguard"), 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			txn := policy.NewTxn(&policy.Conn{}, &policy.Customer{ID: "acme"}, "REF", time.Now())
			txn.Headers = []policy.Header{{Name: "From", Value: " a@acme.example"}, {Name: "X-AUP-Customer", Value: " " + Stamp(testKey, "beta", "R", "x@y.example", time.Now())}, {Name: "Feedback-ID", Value: " " + tt.fb}}
			fs, err := c.EOM(context.Background(), txn)
			if err != nil || len(fs) != 1 || fs[0].Name != FindingFeedbackIDReplaced {
				t.Fatalf("findings %v, %v", fs, err)
			}
			if rm := txn.RemovedHeaders(); len(rm) != tt.removed || rm[0].Index != 1 || rm[1].Index != 1 {
				t.Fatalf("removed %+v", rm)
			}
			if len(txn.Headers) != 1 || txn.Headers[0].Name != "From" {
				t.Fatalf("headers left %+v", txn.Headers)
			}
			var fb []string
			for _, h := range txn.AddedHeaders() {
				if h.Name == FeedbackIDHeader {
					fb = append(fb, h.Value)
				}
			}
			if len(fb) != 1 || fb[0] != tt.want {
				t.Fatalf("Feedback-ID %q, want %q", fb, tt.want)
			}
			if cust, ok := ParseFeedbackID(testKey, fb[0], "aupguard"); !ok || cust != "acme" {
				t.Fatalf("ParseFeedbackID(%q) = %q %v", fb[0], cust, ok)
			}
		})
	}
}

// TestStamperRefusesForeignUnsubscribeLink: a client-written List-Unsubscribe
// with another customer's gateway link (or a made-up token) is refused; the
// customer's own gateway link passes.
func TestStamperRefusesForeignUnsubscribeLink(t *testing.T) {
	cfg := testConfig(t, "")
	s, err := SettingsFromConfig(cfg, testKey)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	c := NewStamper(&Service{Settings: s, Config: cfg, Clock: clock.NewFake(now)})
	for _, tt := range []struct {
		name, link string
		refused    bool
	}{
		{"another customer's link", testBase + NewToken(testKey, "beta", "x@dest.example", now), true},
		{"made-up token", testBase + "AAAAAAAAAAAAAAAAAAAAAAAA", true},
		{"own link", testBase + NewToken(testKey, "acme", "x@dest.example", now), false},
		{"the customer's own endpoint", "https://lists.acme.example/u/1", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			txn := policy.NewTxn(&policy.Conn{}, &policy.Customer{ID: "acme"}, "REF", now)
			txn.Headers = []policy.Header{{Name: "List-Unsubscribe", Value: " <mailto:u@acme.example>, <" + tt.link + ">"}}
			fs, err := c.EOM(context.Background(), txn)
			if err != nil {
				t.Fatal(err)
			}
			refused := len(fs) == 1 && fs[0].Name == FindingForeignUnsubscribe && fs[0].Action == policy.Reject
			if refused != tt.refused {
				t.Fatalf("findings %+v, want refused %v", fs, tt.refused)
			}
		})
	}
}

// TestSuppressionBatchedOnCluster runs the suppression check through a
// chain with the store's batches on a Redis Cluster: the customer's list
// is read in the batch script (the customer's slot), the provider-wide
// list beside it in the same pipeline (another slot), and a send to a
// recipient on either list still counts toward the escalation.
func TestSuppressionBatchedOnCluster(t *testing.T) {
	rc := testenv.StartRedisCluster(t)
	cfg := testConfig(t, "")
	h, err := store.Open(config.StoreConfig{Backend: "redis", Timeout: 5 * time.Second,
		Redis: config.RedisConfig{Addrs: rc.Addrs(), Cluster: true, KeyPrefix: "t:"}}, clock.NewFake(t0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	svc, err := NewService(h, cfg, testKey, clock.NewFake(t0), nil)
	if err != nil {
		t.Fatal(err)
	}
	chain := policy.NewChain([]policy.Step{{Check: NewSuppression(svc), Enabled: true, OnError: policy.Defer}},
		policy.WithBatches(func() *policy.Batch { return h.NewBatch() }))
	if _, _, err := svc.Add(bg, "acme", "opted.out@example.com", SourceAPI, ""); err != nil {
		t.Fatal(err)
	}
	if _, _, err := svc.Add(bg, GlobalList, "trap@traps.example", SourceCLI, ""); err != nil {
		t.Fatal(err)
	}
	for i, tt := range []struct {
		rcpt    string
		want    policy.Action
		finding string
	}{
		{"ok@example.com", policy.Accept, ""},
		{"opted.out@example.com", policy.Reject, FindingOptedOut},
		{"trap@traps.example", policy.Reject, FindingSuppressed},
		{"ok2@example.com", policy.Accept, ""},
	} {
		t.Run(fmt.Sprintf("%d_%s", i, tt.rcpt), func(t *testing.T) {
			a, _ := mailaddr.Parse(tt.rcpt)
			v := chain.Rcpt(bg, txn("acme"), &policy.Rcpt{Addr: a})
			if v.Action != tt.want || v.Finding != tt.finding || v.Errors != 0 {
				t.Fatalf("verdict %v %q (errors %d, %+v), want %v %q", v.Action, v.Finding, v.Errors, v.Results, tt.want, tt.finding)
			}
		})
	}
	st, err := svc.Status(bg, "acme")
	if err != nil || st.OptedOutSends != 2 {
		t.Fatalf("status %+v, %v: want 2 opted-out sends (customer list and global list)", st, err)
	}
}
