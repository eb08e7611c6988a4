package ratelimit

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/policy"
	"github.com/aupguard/aupguard/internal/store"
	"github.com/aupguard/aupguard/internal/testkit/testenv"
)

// sendLogin sends one message of customer cust as login (a SASL login, or
// with local set the Unix login of local submission).
func (h *harness) sendLogin(t testing.TB, cust, login string, local bool, rcpts ...string) outcome {
	t.Helper()
	h.n++
	c := &policy.Conn{AuthLogin: login}
	if local {
		c = &policy.Conn{Local: true, LocalLogin: login}
	}
	return h.run(t, policy.NewTxn(c, h.cust[cust], fmt.Sprintf("ref%d", h.n), h.clk.Now()), 500, rcpts)
}

const tenancyConfig = `
resellers:
  - id: hostco
    limits: {messages_per_hour: 12, recipients_per_day: 100}
customers:
  - id: acme
    reseller: hostco
    logins: [boss, alice, bob, dave]
    domains: [acme.example]
    limits: {messages_per_hour: 10}
    login_limits: {messages_per_hour: 3}
    login_overrides:
      boss: {messages_per_hour: 4}
  - id: beta
    reseller: hostco
    local_users: [www-beta]
    networks: [192.0.2.9]
    domains: [beta.example]
    limits: {messages_per_hour: 50}
`

// tenancyBackends are the three stores the tenancy tests run on: the
// memory backend (the reference), one Redis, and a Redis Cluster (where
// the reseller's counters are in another slot than its customers').
func tenancyBackends(t *testing.T) []struct {
	name string
	b    func(t *testing.T) (Backend, *store.Handle)
} {
	return []struct {
		name string
		b    func(t *testing.T) (Backend, *store.Handle)
	}{
		{"memory", func(t *testing.T) (Backend, *store.Handle) {
			h, err := store.Open(config.StoreConfig{Backend: "memory"}, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { h.Close() })
			return openRedis(t, h), h
		}},
		{"redis", func(t *testing.T) (Backend, *store.Handle) {
			h := redisHandle(t, testenv.StartRedis(t, testenv.RedisOptions{}).Addr(), nil)
			return openRedis(t, h), h
		}},
		{"redis cluster", func(t *testing.T) (Backend, *store.Handle) {
			rc := testenv.StartRedisCluster(t)
			h, err := store.Open(config.StoreConfig{Backend: "redis", Timeout: 5 * time.Second,
				Redis: config.RedisConfig{Addrs: rc.Addrs(), Cluster: true, KeyPrefix: "t:"}}, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { h.Close() })
			return openRedis(t, h), h
		}},
	}
}

// usage reads the counters of one scope (ModeUsage, one run).
func usage(t *testing.T, b Backend, customer string, ops ...Op) []int64 {
	t.Helper()
	r, err := b.Run(context.Background(), customer, ModeUsage, ops)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]int64, len(ops))
	for i := range ops {
		out[i] = r.Ops[i].Used
	}
	return out
}

// hourOp is the messages_per_hour op of a scope with its limit (a rate's
// use is read in units of its limit).
func hourOp(scope, owner string, limit int64) Op {
	l := countedLimits[1] // messages_per_hour
	if scope == "" {
		return l.op(limit, 1)
	}
	return scope_(scope, owner).op(l, limit, 1)
}

func scope_(kind, owner string) scope {
	sc := scope{kind: kind, owner: owner}
	if kind == ScopeLogin {
		sc.prefix = loginKey(owner) + ":"
	}
	return sc
}

// TestLoginAndResellerLimits: a message counts against its login, its
// customer and its reseller, each refusal names whose limit it was, and
// what is refused counts nowhere, on the memory store, Redis and a Redis
// Cluster alike.
func TestLoginAndResellerLimits(t *testing.T) {
	for _, k := range tenancyBackends(t) {
		t.Run(k.name, func(t *testing.T) {
			b, _ := k.b(t)
			h := newHarness(t, b, clock.NewFake(time.Now()), tenancyConfig)
			steps := []struct {
				cust, login string
				local       bool
				n           int    // messages accepted before the refusal
				scope, who  string // the refusal's scope (attrs) and owner
			}{
				{"acme", "boss", false, 4, ScopeLogin, "boss"},   // its override: 4
				{"acme", "alice", false, 3, ScopeLogin, "alice"}, // login_limits: 3
				{"acme", "bob", false, 3, ScopeLogin, "bob"},     // acme now 10 of 10
				{"acme", "dave", false, 0, "", ""},               // the customer's own limit
				{"beta", "www-beta", true, 2, ScopeReseller, "hostco"},
			}
			for _, st := range steps {
				for i := 0; i <= st.n; i++ {
					o := h.sendLogin(t, st.cust, st.login, st.local, "x@rcpt.example")
					if i < st.n {
						if !o.delivered() {
							t.Fatalf("%s/%s message %d refused: mail %+v eom %+v", st.cust, st.login, i, o.mail, o.eom)
						}
						continue
					}
					if o.delivered() {
						t.Fatalf("%s/%s message %d delivered, want refused", st.cust, st.login, i)
					}
					v := o.mail
					if v.Effective() != policy.Defer && o.eom != nil {
						v = *o.eom
					}
					if v.Effective() != policy.Defer || v.Reply.Code() != 451 || v.Reply.Enhanced() != "4.7.1" {
						t.Fatalf("%s/%s: refusal %v, want 451 4.7.1", st.cust, st.login, replyOf(v))
					}
					a := v.Results[len(v.Results)-1].Finding.Attrs
					if a["scope"] != st.scope || (st.scope != "" && a[st.scope] != st.who) {
						t.Fatalf("%s/%s: refused by scope %q attrs %v, want %q %q", st.cust, st.login, a["scope"], a, st.scope, st.who)
					}
					if st.scope != "" && !strings.Contains(replyOf(v), st.scope+" messages_per_hour") {
						t.Errorf("%s/%s: reply %q does not say whose limit", st.cust, st.login, replyOf(v))
					}
				}
			}
			// Exactly what was accepted is counted: no refused message
			// left a reservation anywhere (on a Cluster, the part of a
			// split run that allowed was given back).
			for _, c := range []struct {
				cust  string
				op    Op
				want  int64
				label string
			}{
				{"acme", hourOp(ScopeLogin, "boss", 4), 4, "login boss"},
				{"acme", hourOp(ScopeLogin, "alice", 3), 3, "login alice"},
				{"acme", hourOp(ScopeLogin, "bob", 3), 3, "login bob"},
				{"acme", hourOp(ScopeLogin, "dave", 3), 0, "login dave"},
				{"acme", hourOp("", "", 10), 10, "customer acme"},
				{"beta", hourOp("", "", 50), 2, "customer beta"},
				{"beta", hourOp(ScopeReseller, "hostco", 12), 12, "reseller hostco"},
				{"acme", scope_(ScopeReseller, "hostco").op(countedLimits[5], 100, 1), 12, "reseller hostco recipients_per_day"},
			} {
				if got := usage(t, b, c.cust, c.op)[0]; got != c.want {
					t.Errorf("%s: counted %d, want %d", c.label, got, c.want)
				}
			}
		})
	}
}

func TestLoginOfConn(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    *policy.Conn
		want string
	}{
		{"SASL", &policy.Conn{AuthLogin: "alice@acme.example"}, "alice@acme.example"},
		{"local submission", &policy.Conn{Local: true, LocalLogin: "www-data"}, "www-data"},
		{"network only", &policy.Conn{}, ""},
		{"none", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Login(tc.c); got != tc.want {
				t.Fatalf("Login = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestTenancyExactUnderConcurrentLoad: two gateways (two checks
// instances, each with its own store connection) on one real Redis, 40
// goroutines sending at once as 7 logins of two customers of one
// reseller, each of whose limits binds. Whatever the interleaving, the counts are exact: the reseller
// accepts exactly its limit, no login or customer passes its own, and the
// counters of every login, customer and the reseller equal what was
// delivered.
func TestTenancyExactUnderConcurrentLoad(t *testing.T) {
	r := testenv.StartRedis(t, testenv.RedisOptions{})
	const y = `
resellers:
  - {id: hostco, limits: {messages_per_day: 50}}
customers:
  - {id: acme, reseller: hostco, logins: [a1, a2, a3, a4], domains: [acme.example], limits: {messages_per_day: 30}, login_limits: {messages_per_day: 12}}
  - {id: beta, reseller: hostco, logins: [b1, b2, b3], domains: [beta.example], limits: {messages_per_day: 40}, login_limits: {messages_per_day: 8}}
`
	var hs []*harness
	var bs []Backend
	for i := 0; i < 2; i++ {
		b := openRedis(t, redisHandle(t, r.Addr(), nil))
		bs = append(bs, b)
		hs = append(hs, newHarness(t, b, clock.NewFake(time.Now()), y))
	}
	logins := []struct{ cust, login string }{{"acme", "a1"}, {"acme", "a2"}, {"acme", "a3"}, {"acme", "a4"}, {"beta", "b1"}, {"beta", "b2"}, {"beta", "b3"}}
	var delivered, refused atomic.Int64
	var mu sync.Mutex
	perLogin := map[string]int64{}
	perCustomer := map[string]int64{}
	var wg sync.WaitGroup
	for g := 0; g < 40; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hr := hs[g%2]
			for i := 0; i < 6; i++ {
				l := logins[(g+i)%len(logins)]
				tx := policy.NewTxn(&policy.Conn{AuthLogin: l.login}, hr.cust[l.cust], fmt.Sprintf("g%d-%d", g, i), time.Now())
				if hr.run(t, tx, 500, []string{"x@rcpt.example"}).delivered() {
					delivered.Add(1)
					mu.Lock()
					perLogin[l.login]++
					perCustomer[l.cust]++
					mu.Unlock()
				} else {
					refused.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("sent %d, delivered %d, refused %d; delivered per login %v, per customer %v", delivered.Load()+refused.Load(), delivered.Load(), refused.Load(), perLogin, perCustomer)
	// acme can take at most 30 (its own limit under 4 x 12), beta 24 (3
	// logins x 8 under its 40): 54 > 50, so the reseller's limit binds.
	if delivered.Load() != 50 || refused.Load() != 190 {
		t.Fatalf("delivered %d refused %d, want exactly 50 (the reseller's limit) and 190", delivered.Load(), refused.Load())
	}
	loginLimit := map[string]int64{"acme": 12, "beta": 8}
	custLimit := map[string]int64{"acme": 30, "beta": 40}
	day := countedLimits[2] // messages_per_day
	for _, l := range logins {
		sc := scope_(ScopeLogin, l.login)
		got := usage(t, bs[1], l.cust, sc.op(day, loginLimit[l.cust], 1))[0]
		if got != perLogin[l.login] || got > loginLimit[l.cust] {
			t.Errorf("login %s: counted %d, delivered %d (limit %d)", l.login, got, perLogin[l.login], loginLimit[l.cust])
		}
	}
	for _, c := range []string{"acme", "beta"} {
		got := usage(t, bs[0], c, day.op(custLimit[c], 1))[0]
		if got != perCustomer[c] || got > custLimit[c] {
			t.Errorf("customer %s: counted %d, delivered %d (limit %d)", c, got, perCustomer[c], custLimit[c])
		}
	}
	if got := usage(t, bs[0], "acme", scope_(ScopeReseller, "hostco").op(day, 50, 1))[0]; got != 50 {
		t.Errorf("reseller: counted %d, want 50", got)
	}
}

// TestResellerSplitAfterScriptFlush: on a Redis Cluster whose nodes lost
// their scripts (restart, SCRIPT FLUSH), a message of a reseller's
// customer is still counted in both slots: the batch reloads the script
// on the customer's node, the reseller's part on the reseller's.
func TestResellerSplitAfterScriptFlush(t *testing.T) {
	rc := testenv.StartRedisCluster(t)
	h, err := store.Open(config.StoreConfig{Backend: "redis", Timeout: 5 * time.Second,
		Redis: config.RedisConfig{Addrs: rc.Addrs(), Cluster: true, KeyPrefix: "t:"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	b := openRedis(t, h)
	hr := newHarness(t, b, clock.NewFake(time.Now()), `
resellers: [{id: hostco, limits: {messages_per_day: 10}}]
customers: [{id: acme, reseller: hostco, logins: [alice], domains: [acme.example], limits: {messages_per_day: 10}}]
`)
	ctx := context.Background()
	for i := 0; i < 4; i++ {
		if i == 2 {
			if err := rc.Client().ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return c.ScriptFlush(ctx).Err() }); err != nil {
				t.Fatal(err)
			}
		}
		if o := hr.sendLogin(t, "acme", "alice", false, "x@rcpt.example"); !o.delivered() {
			t.Fatalf("message %d (flushed before 2): mail %+v eom %+v", i, o.mail, o.eom)
		}
	}
	day := countedLimits[2]
	if got := usage(t, b, "acme", day.op(10, 1), scope_(ScopeReseller, "hostco").op(day, 10, 1)); got[0] != 4 || got[1] != 4 {
		t.Fatalf("counted customer %d, reseller %d; want 4 and 4", got[0], got[1])
	}
}

// BenchmarkMessageOps is the per-message cost of building a message's
// counter ops (end of message and one recipient) for a customer without
// logins' or reseller's limits (the cost when off) and for one with both.
func BenchmarkMessageOps(b *testing.B) {
	cfg := parseConfig(b, `
defaults: {limits: {messages_per_hour: 1000, messages_per_day: 10000, recipients_per_day: 20000}}
resellers: [{id: hostco, limits: {messages_per_day: 100000}}]
customers:
  - {id: plain, logins: [p], domains: [plain.example]}
  - {id: tenant, reseller: hostco, logins: [t], domains: [tenant.example], login_limits: {messages_per_hour: 100}}
`)
	c, err := New(nil, cfg, testSecret, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	rc := rateCheck{c}
	for _, cu := range []struct{ name, id, login, reseller string }{{"off", "plain", "p", ""}, {"login and reseller", "tenant", "t", "hostco"}} {
		b.Run(cu.name, func(b *testing.B) {
			pc := &policy.Customer{ID: cu.id, Reseller: cu.reseller, Settings: cfg.Customers[map[string]int{"plain": 0, "tenant": 1}[cu.id]].Settings}
			tx := policy.NewTxn(&policy.Conn{AuthLogin: cu.login}, pc, "ref", time.Now())
			rcpt := &policy.Rcpt{}
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				n += len(rc.eomOps(tx)) + len(rc.rcptOps(tx, rcpt))
			}
			b.ReportMetric(float64(n)/float64(b.N), "ops/msg")
		})
	}
}
