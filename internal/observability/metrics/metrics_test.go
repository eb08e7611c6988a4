package metrics

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/aupguard/aupguard/internal/engine/gateway"
	"github.com/aupguard/aupguard/internal/engine/policy"
	"github.com/aupguard/aupguard/internal/observability/panics"
	"github.com/aupguard/aupguard/internal/testkit/testenv"
)

// value returns the value of the metric name with exactly the labels given
// (counter, gauge, or a histogram's sample count); -1 when absent.
func value(t *testing.T, m *Metrics, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, x := range mf.GetMetric() {
			if len(x.GetLabel()) != len(labels) {
				continue
			}
			for _, lp := range x.GetLabel() {
				if labels[lp.GetName()] != lp.GetValue() {
					continue next
				}
			}
			return metricValue(x)
		}
	}
	return -1
}

func metricValue(x *dto.Metric) float64 {
	switch {
	case x.Counter != nil:
		return x.Counter.GetValue()
	case x.Gauge != nil:
		return x.Gauge.GetValue()
	case x.Histogram != nil:
		return float64(x.Histogram.GetSampleCount())
	}
	return -1
}

func TestDecisionsAndFindings(t *testing.T) {
	m := New(Options{TopCustomers: 2})
	res := policy.Result{Check: "rate_limit", Finding: policy.Finding{Name: "volume_spike"}, Action: policy.Defer}
	ds := []*gateway.Decision{
		{Stage: gateway.StageEOM, Customer: "acme", Action: policy.Accept, Effective: policy.Accept, Rcpts: 3, Size: 100},
		{Stage: gateway.StageEOM, Customer: "acme", Action: policy.Reject, Effective: policy.Accept, Check: "dmarc", Rcpts: 1, Size: 50},
		{Stage: gateway.StageMail, Customer: "beta", Action: policy.Defer, Effective: policy.Defer, Check: "rate_limit", Results: []policy.Result{res}},
		{Stage: gateway.StageMail, Customer: "gamma", Action: policy.Defer, Effective: policy.Defer, Check: "rate_limit", Results: []policy.Result{res}},
		{Stage: gateway.StageMail, Customer: "", Action: policy.Reject, Effective: policy.Reject, Check: "identity"},
	}
	for _, d := range ds {
		m.Observe(d)
	}
	tests := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"aupguard_decisions_total", map[string]string{"customer": "acme", "stage": "eom", "check": "none", "action": "accept", "effective": "accept"}, 1},
		{"aupguard_decisions_total", map[string]string{"customer": "acme", "stage": "eom", "check": "dmarc", "action": "reject", "effective": "accept"}, 1},
		{"aupguard_decisions_total", map[string]string{"customer": "beta", "stage": "mail", "check": "rate_limit", "action": "defer", "effective": "defer"}, 1},
		// The third customer is beyond the top 2.
		{"aupguard_decisions_total", map[string]string{"customer": "other", "stage": "mail", "check": "rate_limit", "action": "defer", "effective": "defer"}, 1},
		{"aupguard_decisions_total", map[string]string{"customer": "unidentified", "stage": "mail", "check": "identity", "action": "reject", "effective": "reject"}, 1},
		{"aupguard_findings_total", map[string]string{"check": "rate_limit", "finding": "volume_spike", "action": "defer"}, 2},
		{"aupguard_message_recipients_total", map[string]string{"customer": "acme"}, 4},
		{"aupguard_message_bytes_total", map[string]string{"customer": "acme"}, 150},
	}
	for _, tt := range tests {
		if got := value(t, m, tt.name, tt.labels); got != tt.want {
			t.Errorf("%s%v = %v, want %v", tt.name, tt.labels, got, tt.want)
		}
	}
}

func TestSessionsAndStages(t *testing.T) {
	m := New(Options{TopCustomers: 5})
	m.SessionOpened()
	m.SessionOpened()
	m.SessionClosed()
	m.ObserveStage("rcpt", 3*time.Millisecond)
	m.ObserveStage("rcpt", 4*time.Millisecond)
	for _, tt := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"aupguard_milter_sessions_active", nil, 1},
		{"aupguard_milter_sessions_total", nil, 2},
		{"aupguard_stage_duration_seconds", map[string]string{"stage": "rcpt"}, 2},
	} {
		if got := value(t, m, tt.name, tt.labels); got != tt.want {
			t.Errorf("%s = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestLabelerRerank(t *testing.T) {
	now := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	clk := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	l := newLabeler(2, clk)
	steps := []struct {
		customer, want string
		advance        time.Duration
	}{
		{"a", "a", 0}, {"b", "b", 0}, {"c", "other", 0}, {"c", "other", 0}, {"c", "other", 0},
		// After the rerank c (3 decisions) and a or b (1 each, a first) hold the places.
		{"c", "c", rerankEvery}, {"a", "a", 0}, {"b", "other", 0},
	}
	for i, s := range steps {
		mu.Lock()
		now = now.Add(s.advance)
		mu.Unlock()
		if got := l.label(s.customer); got != s.want {
			t.Fatalf("step %d: label(%s) = %s, want %s", i, s.customer, got, s.want)
		}
	}
	if len(l.labeled) > 2 {
		t.Fatalf("%d labelled customers, bound is 2", len(l.labeled))
	}
}

type fakeEvents struct{}

func (fakeEvents) Dropped() uint64  { return 7 }
func (fakeEvents) Recorded() uint64 { return 100 }
func (fakeEvents) Failed() uint64   { return 2 }
func (fakeEvents) Queued() int      { return 3 }

func TestWatchers(t *testing.T) {
	m := New(Options{})
	m.WatchEvents(fakeEvents{})
	m.WatchEvents(fakeEvents{}) // a second call is ignored
	m.WatchDNS(func() DNSStats { return DNSStats{Hits: 90, Misses: 10, Errors: 1} })
	for name, want := range map[string]float64{
		"aupguard_events_dropped_total": 7, "aupguard_events_recorded_total": 100, "aupguard_events_failed_total": 2, "aupguard_events_queued": 3,
		"aupguard_dns_cache_hits_total": 90, "aupguard_dns_cache_misses_total": 10, "aupguard_dns_upstream_errors_total": 1,
	} {
		if got := value(t, m, name, nil); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
}

type fakeResolver struct{ err error }

func (f fakeResolver) LookupTXT(context.Context, string) ([]string, error)        { return nil, f.err }
func (f fakeResolver) LookupMX(context.Context, string) ([]*net.MX, error)        { return nil, f.err }
func (f fakeResolver) LookupIPAddr(context.Context, string) ([]net.IPAddr, error) { return nil, f.err }
func (f fakeResolver) LookupAddr(context.Context, string) ([]string, error)       { return nil, f.err }

func TestInstrumentResolver(t *testing.T) {
	m := New(Options{})
	ctx := context.Background()
	m.InstrumentResolver(fakeResolver{}).LookupTXT(ctx, "ok.example")
	m.InstrumentResolver(fakeResolver{err: &net.DNSError{Err: "no such host", IsNotFound: true}}).LookupTXT(ctx, "nx.example")
	m.InstrumentResolver(fakeResolver{err: &net.DNSError{Err: "timeout", IsTimeout: true}}).LookupMX(ctx, "slow.example")
	m.InstrumentResolver(fakeResolver{err: errors.New("servfail")}).LookupIPAddr(ctx, "bad.example")
	for _, tt := range []struct {
		name, typ string
		want      float64
	}{
		{"aupguard_dns_lookup_duration_seconds", "txt", 2},
		{"aupguard_dns_errors_total", "txt", -1}, // NXDOMAIN is an answer
		{"aupguard_dns_errors_total", "mx", 1},
		{"aupguard_dns_errors_total", "ip", 1},
	} {
		if got := value(t, m, tt.name, map[string]string{"type": tt.typ}); got != tt.want {
			t.Errorf("%s{type=%s} = %v, want %v", tt.name, tt.typ, got, tt.want)
		}
	}
}

func TestRedisHook(t *testing.T) {
	r := testenv.StartRedis(t, testenv.RedisOptions{})
	c := r.Client()
	m := New(Options{})
	c.AddHook(m.RedisHook())
	ctx := context.Background()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	c.Get(ctx, "missing") // redis.Nil is no error
	c.Do(ctx, "NOSUCHCOMMAND")
	pipe := c.Pipeline()
	pipe.Incr(ctx, "n")
	pipe.Incr(ctx, "n")
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, cmd string
		want      float64
	}{
		{"aupguard_store_command_duration_seconds", "set", 1},
		{"aupguard_store_command_duration_seconds", "get", 1},
		{"aupguard_store_command_duration_seconds", "pipeline", 1},
		{"aupguard_store_errors_total", "get", -1},
		{"aupguard_store_errors_total", "nosuchcommand", 1},
	} {
		if got := value(t, m, tt.name, map[string]string{"command": tt.cmd}); got != tt.want {
			t.Errorf("%s{command=%s} = %v, want %v", tt.name, tt.cmd, got, tt.want)
		}
	}
	var names []string
	mfs, _ := m.Registry().Gather()
	for _, mf := range mfs {
		names = append(names, mf.GetName())
	}
	if !strings.Contains(strings.Join(names, " "), "go_goroutines") {
		t.Error("Go runtime collector missing")
	}
}

// BenchmarkObserve is the metrics' cost per decision on the milter's goroutine.
func BenchmarkObserve(b *testing.B) {
	m := New(Options{TopCustomers: 20})
	d := &gateway.Decision{Stage: gateway.StageEOM, Customer: "acme", Action: policy.Accept, Effective: policy.Accept, Rcpts: 2, Size: 1000,
		Results: []policy.Result{{Check: "bulk_mail", Finding: policy.Finding{Name: "bulk_dkim_unknown"}, Action: policy.Accept}}}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.Observe(d)
		}
	})
}

func TestPanicsAndBreakerExported(t *testing.T) {
	m := New(Options{})
	m.WatchPanics(func() []panics.Count { return []panics.Count{{Where: panics.WhereCheck, N: 2}} })
	m.WatchBreaker(func() BreakerStats { return BreakerStats{Open: true, Opens: 3, FastFailed: 40} })
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, mm := range mf.GetMetric() {
			name := mf.GetName()
			for _, l := range mm.GetLabel() {
				name += "{" + l.GetValue() + "}"
			}
			v := mm.GetCounter().GetValue() + mm.GetGauge().GetValue()
			got[name] = v
		}
	}
	want := map[string]float64{
		"aupguard_panics_total{check}": 2, "aupguard_panics_total{milter_connection}": 0, "aupguard_panics_total{milter_handler}": 0,
		"aupguard_store_circuit_open": 1, "aupguard_store_circuit_opens_total": 3, "aupguard_store_circuit_fast_failures_total": 40,
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", k, g, ok, v)
		}
	}
}
