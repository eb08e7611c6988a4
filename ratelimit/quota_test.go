package ratelimit

import (
	"context"
	"testing"
	"time"

	"github.com/aupguard/aupguard/clock"
	"github.com/aupguard/aupguard/config"
	"github.com/aupguard/aupguard/store"
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
