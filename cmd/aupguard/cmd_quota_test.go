package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/policy"
	"github.com/aupguard/aupguard/internal/mailaddr"
	"github.com/aupguard/aupguard/internal/secrets"
	"github.com/aupguard/aupguard/internal/store"
	"github.com/aupguard/aupguard/internal/testkit/testenv"
	"github.com/aupguard/aupguard/ratelimit"
)

func TestQuotaCommand(t *testing.T) {
	r := testenv.StartRedis(t, testenv.RedisOptions{})
	path := filepath.Join(t.TempDir(), "aupguard.yaml")
	y := `
store: {backend: redis, redis: {addrs: ["` + r.Addr() + `"]}}
defaults: {limits: {messages_per_minute: 10, messages_per_day: 500}}
customers:
  - id: acme
    networks: [192.0.2.1]
    domains: [acme.example]
    limits: {recipients_per_message: 20}
`
	if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path, config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	h, err := store.Open(cfg.Store, clock.System{})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	b, err := ratelimit.Open(context.Background(), h)
	if err != nil {
		t.Fatal(err)
	}
	// Two messages as the rate_limit check counts them.
	for i := 0; i < 2; i++ {
		_, err := b.Run(context.Background(), "acme", ratelimit.ModeReserve, []ratelimit.Op{
			{Kind: ratelimit.KindRate, Name: "messages_per_minute", Key: "messages_per_minute", Limit: 10, Period: time.Minute, N: 1},
			{Kind: ratelimit.KindWindow, Name: "messages_per_day", Key: "messages_per_day", Limit: 500, Period: 24 * time.Hour, N: 1},
		})
		if err != nil {
			t.Fatal(err)
		}
	}

	t.Run("json", func(t *testing.T) {
		var out, errb bytes.Buffer
		if rc := runMain([]string{"quota", "-config", path, "-json", "acme"}, &out, &errb); rc != 0 {
			t.Fatalf("rc %d: %s", rc, errb.String())
		}
		var rep ratelimit.QuotaReport
		if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
			t.Fatalf("%v\n%s", err, out.String())
		}
		got := map[string]ratelimit.LimitUsage{}
		for _, l := range rep.Limits {
			got[l.Name] = l
		}
		if l := got["messages_per_day"]; l.Used == nil || *l.Used != 2 || *l.Remaining != 498 || l.FreeAt == nil {
			t.Errorf("messages_per_day: %+v", l)
		}
		if l := got["recipients_per_message"]; l.Limit != 20 {
			t.Errorf("recipients_per_message: %+v", l)
		}
		if l := got["bytes_per_day"]; !l.Unlimited {
			t.Errorf("bytes_per_day: %+v", l)
		}
		if time.Since(rep.Time) > time.Minute {
			t.Errorf("report time %s is not the store's now", rep.Time)
		}
	})
	t.Run("text", func(t *testing.T) {
		var out, errb bytes.Buffer
		if rc := runMain([]string{"quota", "-config", path, "acme"}, &out, &errb); rc != 0 {
			t.Fatalf("rc %d: %s", rc, errb.String())
		}
		for _, want := range []string{"customer acme", "messages_per_minute", "10 messages / 1m0s", "messages_per_day", "498", "unlimited", "spike detection: 0 messages in the last 10m0s"} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("output lacks %q:\n%s", want, out.String())
			}
		}
	})
	t.Run("unknown customer", func(t *testing.T) {
		var out, errb bytes.Buffer
		if rc := runMain([]string{"quota", "-config", path, "nobody"}, &out, &errb); rc != 1 || !strings.Contains(errb.String(), `no customer "nobody"`) {
			t.Fatalf("rc %d: %s", rc, errb.String())
		}
	})
	t.Run("usage", func(t *testing.T) {
		var out, errb bytes.Buffer
		if rc := runMain([]string{"quota", "-config", path}, &out, &errb); rc != 2 {
			t.Fatalf("rc %d", rc)
		}
	})
}

// TestQuotaCommandLoginAndReseller: after messages sent through the
// rate_limit check by two logins of a reseller's customer, `aupguard
// quota -login` shows the login's own use and the reseller's, read in
// the same run as the customer's.
func TestQuotaCommandLoginAndReseller(t *testing.T) {
	r := testenv.StartRedis(t, testenv.RedisOptions{})
	path := filepath.Join(t.TempDir(), "aupguard.yaml")
	y := `
store: {backend: redis, redis: {addrs: ["` + r.Addr() + `"]}}
resellers:
  - {id: hostco, limits: {messages_per_day: 100}}
customers:
  - id: acme
    reseller: hostco
    logins: [alice, bob]
    domains: [acme.example]
    limits: {messages_per_day: 50}
    login_limits: {messages_per_day: 10}
    login_overrides: {bob: {messages_per_day: 20}}
`
	if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	// The customer's settings as the directory makes them.
	cfg, err := config.Load(path, config.Options{Customers: []config.CustomerSection{ratelimit.CustomerSection}})
	if err != nil {
		t.Fatal(err)
	}
	h, err := store.Open(cfg.Store, clock.System{})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	b, err := ratelimit.Open(context.Background(), h)
	if err != nil {
		t.Fatal(err)
	}
	checks, err := ratelimit.New(b, cfg, secrets.Key("0123456789abcdef-quota"), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	chain := policy.NewChain([]policy.Step{{Check: checks.Rate(), Enabled: true, OnError: policy.Defer}})
	cu := &policy.Customer{ID: "acme", Reseller: "hostco", Settings: cfg.Customers[0].Settings}
	ctx := context.Background()
	for i, login := range []string{"alice", "alice", "alice", "bob"} {
		tx := policy.NewTxn(&policy.Conn{AuthLogin: login}, cu, fmt.Sprintf("ref%d", i), time.Now())
		rc := &policy.Rcpt{Addr: mailaddr.Address{Local: "x", Domain: "example.org"}}
		chain.Mail(ctx, tx)
		chain.Rcpt(ctx, tx, rc)
		tx.Rcpts = append(tx.Rcpts, rc)
		v := chain.EOM(ctx, tx)
		chain.Finish(ctx, tx, v.Effective() == policy.Accept)
		if v.Effective() != policy.Accept {
			t.Fatalf("message %d: %v", i, v.Reply)
		}
	}
	var out, errb bytes.Buffer
	if rc := runMain([]string{"quota", "-config", path, "-json", "-login", "alice", "acme"}, &out, &errb); rc != 0 {
		t.Fatalf("rc %d: %s", rc, errb.String())
	}
	var rep ratelimit.QuotaReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatal(err)
	}
	used := func(ls []ratelimit.LimitUsage) int64 {
		for _, l := range ls {
			if l.Name == "messages_per_day" && l.Used != nil {
				return *l.Used
			}
		}
		return -1
	}
	if rep.Login != "alice" || used(rep.LoginLimits) != 3 || used(rep.Limits) != 4 || rep.Reseller != "hostco" || used(rep.ResellerLimits) != 4 {
		t.Fatalf("report: login %q %d, customer %d, reseller %q %d; want alice 3, 4, hostco 4\n%s", rep.Login, used(rep.LoginLimits), used(rep.Limits), rep.Reseller, used(rep.ResellerLimits), out.String())
	}
	out.Reset()
	if rc := runMain([]string{"quota", "-config", path, "-login", "bob", "acme"}, &out, &errb); rc != 0 {
		t.Fatalf("rc %d: %s", rc, errb.String())
	}
	for _, want := range []string{"login bob (its own limits)", "20 messages / 24h0m0s", "reseller hostco (all its customers together)", "100 messages / 24h0m0s"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
}
