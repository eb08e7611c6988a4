package ratelimit

import (
	"context"
	"testing"
	"time"

	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/store"
)

func TestQuota(t *testing.T) {
	cfg := parseConfig(t, `
spike: {window: 10m}
defaults: {limits: {messages_per_minute: 10, messages_per_day: 100, recipients_per_message: 50}}
customers:
  - id: acme
    networks: [192.0.2.1]
    domains: [acme.example]
    limits: {bytes_per_day: 1MB, messages_per_day: 0}
`)
	clk := clock.NewFake(t0)
	h, err := store.Open(config.StoreConfig{Backend: "memory"}, clk)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	b, err := Open(context.Background(), h)
	if err != nil {
		t.Fatal(err)
	}
	hr := newHarness(t, b, clk, "spike: {window: 10m}\ndefaults: {limits: {messages_per_minute: 10, bytes_per_day: 1MB}}"+baseConfig)
	for i := 0; i < 3; i++ {
		if o := hr.send(t, "acme", "", 1000, "a@x.example"); !o.delivered() {
			t.Fatalf("refused: %+v", o)
		}
	}
	clk.Advance(time.Second)
	rep, err := Quota(context.Background(), h, cfg, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Time.Equal(clk.Now()) {
		t.Errorf("time %s", rep.Time)
	}
	byName := map[string]LimitUsage{}
	for _, l := range rep.Limits {
		byName[l.Name] = l
	}
	mpm := byName["messages_per_minute"]
	if mpm.Limit != 10 || *mpm.Used != 3 || *mpm.Remaining != 7 || mpm.NextFreeAt != nil || !mpm.FreeAt.Equal(t0.Add(18*time.Second)) {
		t.Errorf("messages_per_minute: %+v used %d free %v", mpm, *mpm.Used, mpm.FreeAt)
	}
	bpd := byName["bytes_per_day"]
	if bpd.Limit != 1000000 || *bpd.Used != 3000 || *bpd.Remaining != 997000 || !bpd.FreeAt.Equal(t0.Add(24*time.Hour+10*time.Minute)) {
		t.Errorf("bytes_per_day: %+v", bpd)
	}
	if mpd := byName["messages_per_day"]; !mpd.Unlimited || mpd.Used != nil {
		t.Errorf("messages_per_day should be lifted by the customer's 0: %+v", mpd)
	}
	if rpm := byName["recipients_per_message"]; rpm.Limit != 50 || rpm.Kind != "per_message" {
		t.Errorf("recipients_per_message: %+v", rpm)
	}
	if rep.Spike == nil || rep.Spike.Count != 3 || rep.Spike.Spiking {
		t.Errorf("spike: %+v", rep.Spike)
	}
	if _, err := Quota(context.Background(), h, cfg, "nobody"); err == nil {
		t.Error("unknown customer: no error")
	}
}

// TestMemoryPersists: with store.path set, the memory backend's counters
// and baselines survive a restart (written at Close, read at start).
func TestMemoryPersists(t *testing.T) {
	dir := t.TempDir()
	clk := clock.NewFake(t0)
	m, err := newMemory(clk, dir)
	if err != nil {
		t.Fatal(err)
	}
	ops := []Op{countedLimits[2].op(2, 1), {Kind: KindSpike, Name: FindingSpike, Key: "spike", Period: 10 * time.Minute, N: 1, Spike: SpikeParams{Factor: 5, Floor: 10, Baseline: 60, Alpha: 0.5}}}
	for i := 0; i < 2; i++ {
		if r, err := m.Run(context.Background(), "acme", ModeReserve, ops); err != nil || !r.Allowed {
			t.Fatalf("reserve %d: %+v %v", i, r, err)
		}
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	m2, err := newMemory(clk, dir)
	if err != nil {
		t.Fatal(err)
	}
	r, err := m2.Run(context.Background(), "acme", ModeReserve, ops)
	if err != nil || r.Allowed || r.Binding != 0 {
		t.Fatalf("after restart the daily quota was forgotten: %+v %v", r, err)
	}
	u, err := m2.Run(context.Background(), "acme", ModeUsage, []Op{{Kind: KindSpike, Name: FindingSpike, Key: "spike", Period: 10 * time.Minute, Spike: ops[1].Spike}})
	if err != nil || u.Ops[0].Count != 2 {
		t.Fatalf("spike window after restart: %+v %v", u.Ops, err)
	}
}

// TestSnippet: the documented snippet is a valid config and means what
// its comments say.
func TestSnippet(t *testing.T) {
	cfg, err := config.Load("../configs/snippets/ratelimit.yaml", config.Options{Sections: []config.SectionSpec{Section}})
	if err != nil {
		t.Fatal(err)
	}
	s, err := SettingsFor(cfg, "anyone")
	if err != nil {
		t.Fatal(err)
	}
	if s.MessagesPerMinute != 60 || s.BytesPerDay != 2e9 || s.MessageSize != 25e6 || !s.FoldSubaddress || s.CaseSensitiveLocal ||
		s.Spike.Factor != 5 || s.Spike.Floor != 100 || s.Spike.Baseline != 60 || s.SpikeWindow != 10*time.Minute || !s.SpikeEnabled {
		t.Fatalf("snippet settings: %+v", s)
	}
}
