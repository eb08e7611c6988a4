package resolver

import (
	"bytes"
	"context"
	"errors"
	"net"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/miekg/dns"

	"github.com/aupguard/aupguard/internal/engine/config"
)

// behaviour is what the fake transport does for one query.
type behaviour int

const (
	answerNow       behaviour = iota // reply at once
	answerOnRelease                  // reply when released, or time out with the query's context
	failOnRelease                    // SERVFAIL-like failure when released, or time out
	waitForEnd                       // only the query's context ends it
	panicOnRelease                   // panic when released
)

// call is one query the fake transport was asked.
type call struct {
	gid      uint64 // goroutine it ran on
	ctx      context.Context
	deadline time.Time
}

// fakeTransport stands in for Cache.exchange: it records which goroutine
// asks and with which bound, and answers as the test's script says.
type fakeTransport struct {
	script  []behaviour
	release chan struct{}

	mu    sync.Mutex
	calls []call
}

func (ft *fakeTransport) query(ctx context.Context, q question) (*dns.Msg, error) {
	dl, _ := ctx.Deadline()
	ft.mu.Lock()
	n := len(ft.calls)
	ft.calls = append(ft.calls, call{gid: goid(), ctx: ctx, deadline: dl})
	ft.mu.Unlock()
	b := waitForEnd
	if n < len(ft.script) {
		b = ft.script[n]
	}
	timeout := &net.DNSError{Err: "i/o timeout", Name: q.name, IsTimeout: true, IsTemporary: true}
	if b != answerNow {
		select {
		case <-ft.release:
		case <-ctx.Done():
			return nil, timeout
		}
		if b == waitForEnd {
			<-ctx.Done()
			return nil, timeout
		}
	}
	if b == panicOnRelease {
		panic("fake transport panics")
	}
	if b == failOnRelease {
		return nil, &net.DNSError{Err: "SERVFAIL from fake", Name: q.name, IsTemporary: true}
	}
	m := new(dns.Msg)
	m.SetQuestion(q.name, q.qtype)
	m.Response = true
	rr, err := dns.NewRR(q.name + " 0 TXT \"fake\"")
	if err != nil {
		return nil, err
	}
	m.Answer = []dns.RR{rr}
	return m, nil
}

// goid is the id of the calling goroutine (from its stack header,
// "goroutine N [running]:").
func goid() uint64 {
	var buf [64]byte
	b := buf[:runtime.Stack(buf[:], false)]
	b = bytes.TrimPrefix(b, []byte("goroutine "))
	if i := bytes.IndexByte(b, ' '); i > 0 {
		b = b[:i]
	}
	id, err := strconv.ParseUint(string(b), 10, 64)
	if err != nil {
		panic("goroutine id: " + err.Error())
	}
	return id
}

type outcome struct {
	gid uint64
	got string // "answer", "timeout", "temporary" or the unexpected error
}

// classify names the outcome of a lookup that returned n records.
func classify(n int, err error) string {
	var de *net.DNSError
	switch {
	case err == nil && n == 1:
		return "answer"
	case err == nil:
		return "empty answer"
	case !errors.As(err, &de) || de.IsNotFound || !de.Temporary():
		return "unexpected error: " + err.Error()
	case de.Timeout():
		return "timeout"
	}
	return "temporary"
}

func TestFlights(t *testing.T) {
	const ms = time.Millisecond
	tests := []struct {
		name      string
		timeout   time.Duration // dns.timeout
		leaderTO  time.Duration // leader's context timeout; 0: none
		cancelAt  time.Duration // the leader's context is cancelled then; 0: never
		follower  bool          // a second caller asks the same question while the first one's query runs
		followTO  time.Duration // its context timeout; 0: none
		releaseAt time.Duration // the fake transport is released then; 0: never
		script    []behaviour
		// Expected: leader's and follower's outcomes, the bound of each
		// query (after the start), who ran it, and the counters.
		leader, follow string
		deadlines      []time.Duration
		ranBy          []string // "leader" or "follower": each query ran on that caller's goroutine
		callerCtx      bool     // the leader's query ran on the leader's own context (no context made)
		stats          Stats
	}{
		{
			name: "leader runs the query itself, bounded by dns.timeout", timeout: time.Second,
			script: []behaviour{answerNow}, leader: "answer",
			deadlines: []time.Duration{time.Second}, ranBy: []string{"leader"},
			stats: Stats{Misses: 1},
		},
		{
			name: "leader runs the query itself, bounded by its earlier deadline, on its own context", timeout: time.Second, leaderTO: 300 * ms,
			script: []behaviour{answerNow}, leader: "answer",
			deadlines: []time.Duration{300 * ms}, ranBy: []string{"leader"}, callerCtx: true,
			stats: Stats{Misses: 1},
		},
		{
			name: "follower joins the leader's query and gets its answer", timeout: time.Second,
			follower: true, releaseAt: 100 * ms, script: []behaviour{answerOnRelease},
			leader: "answer", follow: "answer",
			deadlines: []time.Duration{time.Second}, ranBy: []string{"leader"},
			stats: Stats{Misses: 1, Dedups: 1},
		},
		{
			name: "upstream failure is shared, not asked again", timeout: time.Second,
			follower: true, releaseAt: 100 * ms, script: []behaviour{failOnRelease, answerNow},
			leader: "temporary", follow: "temporary",
			deadlines: []time.Duration{time.Second}, ranBy: []string{"leader"},
			stats: Stats{Misses: 1, Dedups: 1, Errors: 1},
		},
		{
			name: "dns.timeout of the query is shared, not asked again", timeout: time.Second,
			follower: true, script: []behaviour{waitForEnd, answerNow},
			leader: "timeout", follow: "timeout",
			deadlines: []time.Duration{time.Second}, ranBy: []string{"leader"},
			stats: Stats{Misses: 1, Dedups: 1, Errors: 1},
		},
		{
			name: "leader's deadline ends its query: the follower asks again", timeout: time.Second, leaderTO: 200 * ms,
			follower: true, script: []behaviour{waitForEnd, answerNow},
			leader: "timeout", follow: "answer",
			deadlines: []time.Duration{200 * ms, time.Second}, ranBy: []string{"leader", "follower"},
			stats: Stats{Misses: 2},
		},
		{
			name: "leader cancelled: the follower asks again", timeout: time.Second, cancelAt: 50 * ms,
			follower: true, script: []behaviour{waitForEnd, answerNow},
			leader: "timeout", follow: "answer",
			deadlines: []time.Duration{time.Second, time.Second}, ranBy: []string{"leader", "follower"},
			stats: Stats{Misses: 2},
		},
		{
			name: "follower asking again keeps to its own dns.timeout", timeout: time.Second, leaderTO: 400 * ms,
			follower: true, script: []behaviour{waitForEnd, waitForEnd},
			leader: "timeout", follow: "timeout",
			deadlines: []time.Duration{400 * ms, time.Second}, ranBy: []string{"leader", "follower"},
			stats: Stats{Misses: 2, Errors: 1},
		},
		{
			name: "follower asking again keeps to its own deadline", timeout: time.Second, leaderTO: 200 * ms,
			follower: true, followTO: 600 * ms, script: []behaviour{waitForEnd, waitForEnd},
			leader: "timeout", follow: "timeout",
			deadlines: []time.Duration{200 * ms, 600 * ms}, ranBy: []string{"leader", "follower"},
			stats: Stats{Misses: 2},
		},
		{
			name: "follower with a shorter deadline gives up alone", timeout: time.Second,
			follower: true, followTO: 100 * ms, releaseAt: 300 * ms, script: []behaviour{answerOnRelease},
			leader: "answer", follow: "timeout",
			deadlines: []time.Duration{time.Second}, ranBy: []string{"leader"},
			stats: Stats{Misses: 1, Dedups: 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				c, err := New(config.DNSConfig{Servers: []string{"192.0.2.53"}, Timeout: tt.timeout}, nil)
				if err != nil {
					t.Fatal(err)
				}
				ft := &fakeTransport{script: tt.script, release: make(chan struct{})}
				c.query = ft.query
				t0 := time.Now()
				if tt.releaseAt > 0 {
					time.AfterFunc(tt.releaseAt, func() { close(ft.release) })
				}
				ask := func(ctx context.Context) <-chan outcome {
					ch := make(chan outcome, 1)
					go func() {
						gid := goid()
						txts, err := c.LookupTXT(ctx, "q.example")
						ch <- outcome{gid, classify(len(txts), err)}
					}()
					return ch
				}
				lctx, lcancel := context.WithCancel(context.Background())
				defer lcancel()
				if tt.leaderTO > 0 {
					lctx, lcancel = context.WithTimeout(lctx, tt.leaderTO)
					defer lcancel()
				}
				if tt.cancelAt > 0 {
					time.AfterFunc(tt.cancelAt, lcancel)
				}
				leader := ask(lctx)
				synctest.Wait() // the leader is in its query (or done)
				var follower <-chan outcome
				if tt.follower {
					fctx := context.Background()
					if tt.followTO > 0 {
						var cancel context.CancelFunc
						fctx, cancel = context.WithTimeout(fctx, tt.followTO)
						defer cancel()
					}
					follower = ask(fctx)
				}
				lo := <-leader
				if lo.got != tt.leader {
					t.Errorf("leader: %s, want %s", lo.got, tt.leader)
				}
				var fo outcome
				if tt.follower {
					fo = <-follower
					if fo.got != tt.follow {
						t.Errorf("follower: %s, want %s", fo.got, tt.follow)
					}
				}
				ft.mu.Lock()
				calls := ft.calls
				ft.mu.Unlock()
				if len(calls) != len(tt.deadlines) {
					t.Fatalf("%d queries upstream, want %d", len(calls), len(tt.deadlines))
				}
				for i, cl := range calls {
					if want := t0.Add(tt.deadlines[i]); !cl.deadline.Equal(want) {
						t.Errorf("query %d bounded at +%s, want +%s", i, cl.deadline.Sub(t0), tt.deadlines[i])
					}
					want := lo.gid
					if tt.ranBy[i] == "follower" {
						want = fo.gid
					}
					if cl.gid != want {
						t.Errorf("query %d ran on goroutine %d, want the %s's (%d)", i, cl.gid, tt.ranBy[i], want)
					}
				}
				if tt.callerCtx && calls[0].ctx != lctx {
					t.Errorf("leader's query ran on a context of its own, not the caller's")
				}
				if st := c.Stats(); st.Hits != tt.stats.Hits || st.Misses != tt.stats.Misses || st.Dedups != tt.stats.Dedups || st.Errors != tt.stats.Errors {
					t.Errorf("stats %+v, want %+v", st, tt.stats)
				}
				c.mu.Lock()
				left := len(c.inflight)
				c.mu.Unlock()
				if left != 0 {
					t.Errorf("%d flights left in flight", left)
				}
			})
		})
	}
}

// TestPanicEndsFlight: a query that panics still ends its flight, so
// its followers (who wait without a timer) ask again instead of waiting
// for ever.
func TestPanicEndsFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, err := New(config.DNSConfig{Servers: []string{"192.0.2.53"}, Timeout: time.Second}, nil)
		if err != nil {
			t.Fatal(err)
		}
		ft := &fakeTransport{script: []behaviour{panicOnRelease, answerNow}, release: make(chan struct{})}
		c.query = ft.query
		panicked := make(chan any, 1)
		go func() {
			defer func() { panicked <- recover() }()
			_, _ = c.LookupTXT(context.Background(), "q.example")
		}()
		synctest.Wait()
		done := make(chan string, 1)
		go func() {
			txts, err := c.LookupTXT(context.Background(), "q.example")
			done <- classify(len(txts), err)
		}()
		synctest.Wait()
		close(ft.release)
		if p := <-panicked; p == nil {
			t.Fatal("the leader's query did not panic")
		}
		if got := <-done; got != "answer" {
			t.Fatalf("follower after the leader's panic: %s, want the answer of its own query", got)
		}
		if len(ft.calls) != 2 {
			t.Fatalf("%d queries, want 2", len(ft.calls))
		}
	})
}
