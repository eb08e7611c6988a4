package content

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/policy"
	"github.com/aupguard/aupguard/internal/resolver"
	"github.com/aupguard/aupguard/internal/store"
	"github.com/aupguard/aupguard/internal/testkit/fakedns"
)

// slowClamd is a clamd that reads a whole INSTREAM session, waits delay,
// then answers found ("" answers clean).
func slowClamd(t *testing.T, delay time.Duration, found string) string {
	t.Helper()
	return fakeClamd(t, func(c net.Conn) {
		r := bufio.NewReader(c)
		cmd := make([]byte, len("zINSTREAM\x00"))
		if _, err := io.ReadFull(r, cmd); err != nil || string(cmd) != "zINSTREAM\x00" {
			return
		}
		var hdr [4]byte
		for {
			if _, err := io.ReadFull(r, hdr[:]); err != nil {
				return
			}
			n := binary.BigEndian.Uint32(hdr[:])
			if n == 0 {
				break
			}
			if _, err := io.CopyN(io.Discard, r, int64(n)); err != nil {
				return
			}
		}
		time.Sleep(delay)
		if found == "" {
			_, _ = c.Write([]byte("stream: OK\x00"))
			return
		}
		_, _ = c.Write([]byte("stream: " + found + " FOUND\x00"))
	})
}

// slowRspamd is an rspamd /checkv2 that reads the whole message, waits
// delay, then answers score.
func slowRspamd(t *testing.T, delay time.Duration, score float64) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"score": %.1f, "action": "reject", "symbols": {"SLOW_TEST": {"score": %.1f}}}`, score, score)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// slowBatch stands for the stage's store batch: one round trip of delay.
type slowBatch struct {
	delay time.Duration
	ran   *int
}

// newBatch is the chain's batch factory: a memory batch whose first call
// is the round trip.
func (b *slowBatch) newBatch() *policy.Batch {
	nb := (*store.Handle)(nil).NewBatch()
	nb.Func(func(ctx context.Context) (any, error) {
		*b.ran++
		select {
		case <-time.After(b.delay):
			return nil, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})
	return nb
}

// storeCheck is a check with store work at end of message, ahead of the
// content checks in the chain (as bulk_mail and bounce_rate are).
type storeCheck struct{ prepared int }

func (*storeCheck) Name() string { return "store_probe" }
func (s *storeCheck) PrepareEOM(context.Context, *policy.Txn, *policy.Batch) {
	s.prepared++
}
func (*storeCheck) EOM(context.Context, *policy.Txn) ([]policy.Finding, error) { return nil, nil }

// engineDelays are the delays of one test's fake engines and store.
type engineDelays struct {
	clamd, rspamd, dns, store time.Duration
	// lookups bounds the link lookups of one message (default 5s).
	lookups time.Duration
}

// contentChain is a chain [store_probe, malware, listed_url, spam_score]
// on fake engines that answer after the given delays: clamd finds a
// signature when malware is set, the link's domain is listed when listed
// is set, rspamd scores 20 (reject) when spam is set.
type contentChain struct {
	chain   *policy.Chain
	checks  []policy.BodyChecker
	store   *storeCheck
	batches int
	// eomBatches is batches after the last EOM stage, before Finish.
	eomBatches int
	spam       *SpamScore
	listed     *ListedURL
	malware    *Malware
	msg        message
}

func newContentChain(t *testing.T, d engineDelays, malware, listed, spam bool) *contentChain {
	t.Helper()
	found := ""
	if malware {
		found = "Slow.Test.Sig"
	}
	score := 1.0
	if spam {
		score = 20
	}
	domain := "clean.example"
	if listed {
		domain = "phish.example"
	}
	dns := fakedns.Start(t, fmt.Sprintf(`
phish.example.dbl.test. A 127.0.1.4
phish.example.dbl.test. DELAY %s
clean.example.dbl.test. DELAY %s
`, d.dns, d.dns))
	res, err := resolver.New(config.DNSConfig{Servers: []string{dns.Addr()}, Timeout: 5 * time.Second, CacheSize: 100}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Clamd = ClamdConfig{Address: slowClamd(t, d.clamd, found), Timeout: 5 * time.Second, MaxConcurrent: 4, StreamMaxLength: 1 << 20}
	cfg.Rspamd.URL = slowRspamd(t, d.rspamd, score)
	cfg.Rspamd.Timeout = 5 * time.Second
	if d.lookups == 0 {
		d.lookups = 5 * time.Second
	}
	lu, err := NewListedURL(URLsConfig{Zones: []URLZone{{Zone: "dbl.test", Kind: "dbl"}}, MaxLookups: 5, Concurrency: 2, Timeout: d.lookups, MaxHosts: 10, MaxTextBytes: 1 << 20}, res, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &contentChain{
		store:   &storeCheck{},
		malware: NewMalware(cfg.Clamd, sysClock, nil),
		listed:  lu,
		spam:    NewSpamScore(cfg, sysClock, nil),
		msg:     plainMsg("Read this: https://www." + domain + "/login\r\n"),
	}
	c.checks = []policy.BodyChecker{c.malware, c.listed, c.spam}
	steps := []policy.Step{{Check: c.store, Enabled: true}}
	for _, ch := range c.checks {
		steps = append(steps, policy.Step{Check: ch, Enabled: true, OnError: policy.Defer})
	}
	sb := &slowBatch{delay: d.store, ran: &c.batches}
	c.chain = policy.NewChain(steps, policy.WithBatches(sb.newBatch))
	return c
}

// eom streams the message to the checks the way the session does (body
// writers closed at end of message), runs the EOM stage and times both:
// the engines get the end of the message when the writers close.
func (c *contentChain) eom(t *testing.T, mode policy.Mode) (policy.Verdict, time.Duration, *policy.Txn) {
	t.Helper()
	tx := txnFor(c.msg)
	tx.Customer.Mode = mode
	start := time.Now()
	feed(tx, c.msg, 4096, c.checks...)
	v := c.chain.EOM(context.Background(), tx)
	took := time.Since(start)
	c.eomBatches = c.batches
	c.chain.Finish(context.Background(), tx, v.Action == policy.Accept)
	return v, took, tx
}

// TestContentEOMOverlapsTheStoreAndEachOther: with clamd, rspamd, the
// blocklist's DNS and the store batch each taking delay, end of message
// takes about one delay (the longest), not the sum of four.
func TestContentEOMOverlapsTheStoreAndEachOther(t *testing.T) {
	const delay = 400 * time.Millisecond
	d := engineDelays{clamd: delay, rspamd: delay, dns: delay, store: delay}
	cases := []struct {
		name                  string
		malware, listed, spam bool
		mode                  policy.Mode
		want                  string // deciding check, "" accept
	}{
		{"clean message: every engine answers clean", false, false, false, policy.Enforce, ""},
		{"every engine finds: malware decides", true, true, true, policy.Enforce, MalwareCheck},
		{"monitor mode: every check waits for its own engine", true, true, true, policy.Monitor, MalwareCheck},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newContentChain(t, d, tc.malware, tc.listed, tc.spam)
			v, took, _ := c.eom(t, tc.mode)
			if v.Check != tc.want || v.Errors != 0 {
				t.Fatalf("verdict %s by %q (errors %d; results %v), want %q", v.Action, v.Check, v.Errors, v.Results, tc.want)
			}
			if c.eomBatches != 1 || c.store.prepared != 1 {
				t.Fatalf("store batch ran %d times at end of message (prepared %d), want once", c.eomBatches, c.store.prepared)
			}
			// One delay, plus scheduling on a loaded machine; serial work
			// would take four (the store batch, then each engine in turn),
			// and overlapping only the scanners that already had the
			// message would still take two.
			if took < delay || took > delay+delay/2 {
				t.Fatalf("end of message took %s with four pieces of work of %s each, want about %s (the longest), not their sum", took, delay, delay)
			}
			t.Logf("end of message: %s (each piece of work %s, serial sum %s)", took.Round(time.Millisecond), delay, 4*delay)
		})
	}
}

// TestContentEOMWinnerIsChainOrder: whichever engine answers first, the
// deciding reason is the first finding in chain order, and in monitor
// mode the results are listed in chain order.
func TestContentEOMWinnerIsChainOrder(t *testing.T) {
	fast, mid, slow := 10*time.Millisecond, 120*time.Millisecond, 250*time.Millisecond
	orders := []struct {
		name string
		d    engineDelays
	}{
		{"clamd slowest, rspamd first", engineDelays{clamd: slow, dns: mid, rspamd: fast}},
		{"clamd first, rspamd slowest", engineDelays{clamd: fast, dns: mid, rspamd: slow}},
		{"DNS first, clamd slowest", engineDelays{clamd: slow, dns: fast, rspamd: mid}},
	}
	finds := []struct {
		name                  string
		malware, listed, spam bool
		want                  string
		wantFinding           string
	}{
		{"all three find", true, true, true, MalwareCheck, FindingMalware},
		{"link and spam find", false, true, true, ListedCheck, FindingListedURL},
		{"spam alone finds", false, false, true, SpamCheck, FindingSpamReject},
	}
	for _, o := range orders {
		for _, f := range finds {
			t.Run(o.name+"/"+f.name, func(t *testing.T) {
				c := newContentChain(t, o.d, f.malware, f.listed, f.spam)
				v, _, _ := c.eom(t, policy.Enforce)
				if v.Action != policy.Reject || v.Check != f.want || v.Finding != f.wantFinding {
					t.Fatalf("verdict %s by %s/%s, want reject by %s/%s", v.Action, v.Check, v.Finding, f.want, f.wantFinding)
				}
				if len(v.Results) != 1 {
					t.Fatalf("enforce mode: %d results after the deciding one was found, want the chain to stop at it: %v", len(v.Results), v.Results)
				}
				v, _, _ = c.eom(t, policy.Monitor)
				var got []string
				for _, r := range v.Results {
					got = append(got, r.Check)
				}
				var want []string
				for _, on := range []struct {
					found bool
					name  string
				}{{f.malware, MalwareCheck}, {f.listed, ListedCheck}, {f.spam, SpamCheck}} {
					if on.found {
						want = append(want, on.name)
					}
				}
				if !slices.Equal(got, want) || v.Check != f.want {
					t.Fatalf("monitor mode: results %v decided by %s, want %v decided by %s", got, v.Check, want, f.want)
				}
			})
		}
	}
}

// TestContentEOMStartedWorkEndsWhenRefusedEarlier: when malware refuses,
// the link lookups and the rspamd request already started are never
// waited for; they end (Finish cancels them; a DNS query in flight ends
// at the lookups' time bound at the latest) and every slot is given back.
func TestContentEOMStartedWorkEndsWhenRefusedEarlier(t *testing.T) {
	const bound = 600 * time.Millisecond
	c := newContentChain(t, engineDelays{clamd: 10 * time.Millisecond, dns: 2 * time.Second, rspamd: 2 * time.Second, lookups: bound}, true, true, true)
	v, took, tx := c.eom(t, policy.Enforce)
	if v.Check != MalwareCheck || took > time.Second {
		t.Fatalf("verdict by %q after %s, want malware at once", v.Check, took)
	}
	sc, _ := listedOf.Get(tx)
	if sc == nil || sc.res == nil {
		t.Fatal("the link lookups were not started at the beginning of the stage")
	}
	select {
	case <-sc.res:
	case <-time.After(bound + time.Second):
		t.Fatal("the link lookups still run after Finish and their time bound")
	}
	deadline := time.Now().Add(time.Second)
	for len(c.spam.slots) != 0 || len(c.malware.slots) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("slots still held after Finish: rspamd %d, clamd %d", len(c.spam.slots), len(c.malware.slots))
		}
		time.Sleep(5 * time.Millisecond)
	}
}
