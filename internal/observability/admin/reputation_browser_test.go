package admin

import (
	"context"
	"fmt"
	"regexp"
	"testing"
	"time"

	"github.com/aupguard/aupguard/internal/checks/reputation"
	"github.com/aupguard/aupguard/internal/testkit/testenv"
)

// TestReputationOnDashboardInBrowser: the bounce rates and the blocklist
// states in the store appear on the dashboard as a browser renders it.
func TestReputationOnDashboardInBrowser(t *testing.T) {
	testenv.Need(t, "chromium")
	const y = trafficConfig + `
reputation:
  bounces: {min_volume: 10}
  dnsbl:
    addresses: [192.0.2.10]
    zones: [{zone: zen.spamhaus.org}]
`
	e := start(t, y, "", func(o *Options) {
		b, err := reputation.Open(o.Store)
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		now := time.Now()
		if _, err := b.Remember(ctx, "QREP1", reputation.Message{Customer: "acme", Bulk: true}, time.Hour); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 20; i++ {
			class := reputation.Sent
			if i < 3 {
				class = reputation.HardBounce
			}
			if _, _, _, err := b.Record(ctx, reputation.Result{QueueID: "QREP1", RcptHash: fmt.Sprint(i), Class: class, Egress: "192.0.2.10"}, now, now.Add(-time.Hour), time.Hour); err != nil {
				t.Fatal(err)
			}
		}
		k := reputation.ListingKey{Address: "192.0.2.10", Zone: "zen.spamhaus.org"}
		if _, _, err := b.Observe(ctx, k, reputation.Observation{Answered: true, Listed: true, Codes: []string{"127.0.0.3"}}, now, 10); err != nil {
			t.Fatal(err)
		}
	})
	url := "http://postmaster:" + testToken + "@" + e.srv.Addr().String() + "/?since=6h"
	dom := string(chromium(t, "--dump-dom", url))
	for name, re := range map[string]string{
		"bounce table":  `<h2>Bounce rates</h2>`,
		"acme at act":   `<tr data-customer="acme" class="level-act"><td>acme</td><td class="n">17</td><td class="n">3</td>.*<td class="n">15.00%</td><td>ACT</td><td>defer_bulk</td></tr>`,
		"blocklists":    `<h2>Blocklists</h2>`,
		"listed egress": `<tr data-address="192.0.2.10" data-zone="zen.spamhaus.org" class="listed"><td>192.0.2.10</td><td>zen.spamhaus.org</td><td>LISTED 127.0.0.3</td>`,
	} {
		if !regexp.MustCompile(re).MatchString(dom) {
			t.Errorf("%s: DOM does not match %s", name, re)
		}
	}
	if t.Failed() {
		t.Logf("DOM:\n%s", dom)
	}
}
