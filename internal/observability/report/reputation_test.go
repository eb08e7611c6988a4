package report

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/aupguard/aupguard/internal/checks/reputation"
)

// fakeReputation answers for acme (at act) and beta (no results), and
// has one listed and one unknown address.
func fakeReputation(_ context.Context, ids []string, listings bool) ([]reputation.Standing, []reputation.Listing, error) {
	var sts []reputation.Standing
	for _, id := range ids {
		st := reputation.Standing{Customer: id, Window: 24 * time.Hour, Level: reputation.LevelLowVolume}
		if id == "acme" {
			st.Counts = reputation.Counts{Sent: 170, Hard: 25, Policy: 4, Other: 1, Deferred: 7}
			st.Rate, st.Level, st.Outcome = 0.125, reputation.LevelAct, "defer_bulk"
		}
		sts = append(sts, st)
	}
	if !listings {
		return sts, nil, nil
	}
	since := base.Add(-time.Hour)
	return sts, []reputation.Listing{
		{ListingKey: reputation.ListingKey{Address: "192.0.2.10", Zone: "zen.spamhaus.org"}, Known: true, Listed: true, Codes: []string{"127.0.0.2"}, Since: since, Checked: base},
		{ListingKey: reputation.ListingKey{Address: "192.0.2.11", Zone: "zen.spamhaus.org"}, Checked: base, Error: "zone zen.spamhaus.org answered error code 127.255.255.254"},
	}, nil
}

func TestReputationInReports(t *testing.T) {
	o := Options{Since: base, Until: base.Add(3 * time.Hour), Config: testConfig(), Reputation: fakeReputation, Now: base.Add(3 * time.Hour)}
	r := build(t, o)
	if len(r.Bounces) != 1 || r.Bounces[0].Customer != "acme" || len(r.Blocklists) != 2 {
		t.Fatalf("bounces %+v blocklists %+v (beta has no results: not listed)", r.Bounces, r.Blocklists)
	}
	var text, page bytes.Buffer
	if err := r.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	if err := r.WriteHTML(&page, HTMLOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Bounce rates (current window)", "12.50%", "ACT", "defer_bulk", "Blocklists", "LISTED 127.0.0.2", "127.255.255.254"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, text.String())
		}
	}
	for _, want := range []string{`<table id="bounces">`, `data-customer="acme" class="level-act"`, `<table id="blocklists">`, `class="listed"`, "LISTED 127.0.0.2"} {
		if !strings.Contains(page.String(), want) {
			t.Errorf("HTML lacks %q", want)
		}
	}

	t.Run("a customer's report shows its own rate, no blocklists", func(t *testing.T) {
		o := o
		o.Customer = "acme"
		r := build(t, o)
		if len(r.Bounces) != 1 || r.Blocklists != nil {
			t.Errorf("bounces %+v blocklists %+v", r.Bounces, r.Blocklists)
		}
	})
	t.Run("a store failure is a note, the report stands", func(t *testing.T) {
		o := o
		o.Reputation = func(context.Context, []string, bool) ([]reputation.Standing, []reputation.Listing, error) {
			return nil, nil, errors.New("store down")
		}
		r := build(t, o)
		if r.Bounces != nil || len(r.Errors) != 1 || !strings.Contains(r.Errors[0], "store down") || r.Totals.Messages == 0 {
			t.Errorf("errors %v totals %+v", r.Errors, r.Totals)
		}
	})
}
