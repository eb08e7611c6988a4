package report

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aupguard/aupguard/internal/checks/optout"
	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/gateway"
	"github.com/aupguard/aupguard/internal/engine/policy"
	"github.com/aupguard/aupguard/internal/observability/events"
	"github.com/aupguard/aupguard/internal/store"
)

var base = time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)

func dec(at time.Duration, stage, cust string, action, effective policy.Action, check, finding string, rcpts int, results ...policy.Result) *gateway.Decision {
	return &gateway.Decision{Time: base.Add(at), Stage: stage, Ref: "R" + at.String(), Customer: cust, SenderDomain: "example.com",
		Rcpts: rcpts, Size: 1000, Action: action, Effective: effective, Check: check, Finding: finding, Results: results, Mode: "enforce"}
}

func res(check, finding string, a policy.Action, attrs map[string]string) policy.Result {
	return policy.Result{Check: check, Finding: policy.Finding{Name: finding, Attrs: attrs}, Action: a}
}

// Known decisions: acme (enforce) in the first hour, beta (monitor) and an
// unidentified client in the second, gamma in the third.
func knownDecisions() []*gateway.Decision {
	A, Q, D, R := policy.Accept, policy.Quarantine, policy.Defer, policy.Reject
	eom, rcpt, mail := gateway.StageEOM, gateway.StageRcpt, gateway.StageMail
	return []*gateway.Decision{
		dec(1*time.Minute, eom, "acme", A, A, "", "", 2),
		dec(2*time.Minute, eom, "acme", A, A, "", "", 2),
		dec(3*time.Minute, eom, "acme", A, A, "", "", 2),
		dec(4*time.Minute, rcpt, "acme", R, R, "optout_suppression", "recipient_opted_out", 1, res("optout_suppression", "recipient_opted_out", R, nil)),
		dec(5*time.Minute, eom, "acme", A, A, "", "", 1),
		dec(6*time.Minute, mail, "acme", D, D, "rate_limit", "volume_spike", 0, res("rate_limit", "volume_spike", D, nil)),
		dec(7*time.Minute, mail, "acme", D, D, "rate_limit", "quota_exceeded", 0, res("rate_limit", "quota_exceeded", D, map[string]string{"limit": "messages_per_day"})),
		dec(61*time.Minute, eom, "beta", R, A, "dmarc", "dmarc_fail", 1, res("dmarc", "dmarc_fail", R, map[string]string{"domain": "bank.example"})),
		dec(62*time.Minute, eom, "beta", Q, Q, "bulk_mail", "bulk_missing_one_click", 5, res("bulk_mail", "bulk_missing_one_click", Q, nil)),
		dec(63*time.Minute, mail, "", R, R, "identity", "unidentified_client", 0),
		dec(121*time.Minute, eom, "gamma", R, R, "header_forgery", "forged_received", 1, res("header_forgery", "forged_received", R, nil)),
		dec(122*time.Minute, eom, "gamma", R, R, "header_forgery", "forged_received", 1, res("header_forgery", "forged_received", R, nil)),
	}
}

func recorded(t *testing.T) *events.Recorder {
	t.Helper()
	clk := clock.NewFake(base.Add(3 * time.Hour))
	h, err := store.Open(config.StoreConfig{Backend: "memory"}, clk)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	r, err := events.New(h, config.EventsConfig{Retention: 48 * time.Hour, AggregateRetention: 400 * 24 * time.Hour, Buffer: 1024, Ring: 1000, File: "off"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range knownDecisions() {
		r.Observe(d)
	}
	if err := r.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	return r
}

func testConfig() *config.Config {
	return &config.Config{Customers: []config.Customer{{ID: "acme", Name: "Acme Corp", Mode: "enforce"}, {ID: "beta", Name: "Beta", Mode: "monitor"}}}
}

func standing(_ context.Context, id string) (*optout.CustomerStatus, error) {
	switch id {
	case "acme":
		return &optout.CustomerStatus{Customer: id, Flag: &optout.Flag{Reason: "opted-out sends"}, Complaints: 3, Delivered: 1000, ComplaintRate: 0.003, RateLevel: "act"}, nil
	case "gamma":
		return nil, errors.New("store down")
	}
	return &optout.CustomerStatus{Customer: id, RateLevel: "low_volume"}, nil
}

func build(t *testing.T, o Options) *Report {
	t.Helper()
	r, err := Build(context.Background(), recorded(t), o)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestReportFigures(t *testing.T) {
	r := build(t, Options{Since: base, Until: base.Add(3 * time.Hour), Config: testConfig(), Top: 3, Standing: standing, Now: base.Add(3 * time.Hour)})

	if want := (Counts{Messages: 11, Recipients: 15, Bytes: 8000, Accepted: 5, Held: 1, Deferred: 2, Rejected: 3, RcptRefused: 1, WouldRefuse: 1}); r.Totals != want {
		t.Errorf("totals %+v\nwant   %+v", r.Totals, want)
	}
	type cust struct {
		messages, accepted, held, deferred, rejected, rcptRefused, would, stopped, spikes, limits int64
	}
	got := map[string]cust{}
	var order []string
	for _, c := range r.Customers {
		got[c.ID] = cust{c.Messages, c.Accepted, c.Held, c.Deferred, c.Rejected, c.RcptRefused, c.WouldRefuse, c.Stopped, c.Spikes, c.LimitHits}
		order = append(order, c.ID)
	}
	wantCust := map[string]cust{
		"acme":  {6, 4, 0, 2, 0, 1, 0, 3, 1, 1},
		"beta":  {2, 1, 1, 0, 0, 0, 1, 1, 0, 0},
		"gamma": {2, 0, 0, 0, 2, 0, 0, 2, 0, 0},
		"-":     {1, 0, 0, 0, 1, 0, 0, 1, 0, 0},
	}
	if !reflect.DeepEqual(got, wantCust) {
		t.Errorf("by customer %+v\nwant        %+v", got, wantCust)
	}
	if want := []string{"acme", "beta", "gamma", "-"}; !reflect.DeepEqual(order, want) {
		t.Errorf("customer order %v, want %v", order, want)
	}
	if r.Customers[0].Name != "Acme Corp" || r.Customers[1].Mode != "monitor" {
		t.Errorf("names from config: %+v", r.Customers[:2])
	}

	checks := map[string]CheckRow{}
	for _, c := range r.Checks {
		checks[c.Check+"/"+c.Finding] = c
	}
	wantChecks := map[string]CheckRow{
		"optout_suppression/recipient_opted_out": {Check: "optout_suppression", Finding: "recipient_opted_out", Reject: 1, Findings: 1},
		"rate_limit/volume_spike":                {Check: "rate_limit", Finding: "volume_spike", Defer: 1, Findings: 1},
		"rate_limit/quota_exceeded":              {Check: "rate_limit", Finding: "quota_exceeded", Defer: 1, Findings: 1},
		"dmarc/dmarc_fail":                       {Check: "dmarc", Finding: "dmarc_fail", Reject: 1, Monitor: 1, Findings: 1},
		"bulk_mail/bulk_missing_one_click":       {Check: "bulk_mail", Finding: "bulk_missing_one_click", Quarantine: 1, Findings: 1},
		"identity/unidentified_client":           {Check: "identity", Finding: "unidentified_client", Reject: 1},
		"header_forgery/forged_received":         {Check: "header_forgery", Finding: "forged_received", Reject: 2, Findings: 2},
	}
	if !reflect.DeepEqual(checks, wantChecks) {
		t.Errorf("by check %+v\nwant     %+v", checks, wantChecks)
	}
	if r.Checks[0].Check != "header_forgery" {
		t.Errorf("checks not sorted by decisions: first %s", r.Checks[0].Check)
	}

	var offenders []string
	for _, c := range r.TopOffenders {
		offenders = append(offenders, c.ID)
	}
	if want := []string{"acme", "gamma", "beta"}; !reflect.DeepEqual(offenders, want) {
		t.Errorf("top offenders %v, want %v", offenders, want)
	}
	if want := []Mark{{Customer: "acme", Time: base, Kind: "volume_spike", Count: 1}}; !reflect.DeepEqual(r.Spikes, want) {
		t.Errorf("spikes %+v", r.Spikes)
	}
	if want := []Mark{{Customer: "acme", Time: base, Kind: "quota_exceeded", Count: 1}}; !reflect.DeepEqual(r.LimitHits, want) {
		t.Errorf("limit hits %+v", r.LimitHits)
	}
	if want := []DMARCRow{{Domain: "bank.example", Customer: "beta", Finding: "dmarc_fail", Count: 1}}; !reflect.DeepEqual(r.DMARC, want) {
		t.Errorf("dmarc %+v", r.DMARC)
	}
	if len(r.OptOut) != 1 || r.OptOut[0].Customer != "acme" || r.OptOut[0].OptedOut != 1 || r.OptOut[0].Standing == nil || r.OptOut[0].Standing.Complaints != 3 {
		t.Errorf("optout %+v", r.OptOut)
	}
	if want := []string{"standing of gamma: store down"}; !reflect.DeepEqual(r.Errors, want) {
		t.Errorf("errors %v", r.Errors)
	}
	if r.Span != time.Hour || len(r.Times) != 3 {
		t.Fatalf("span %s, %d buckets", r.Span, len(r.Times))
	}
	series := map[string][]int64{}
	for _, s := range r.Series {
		series[s.Customer] = s.Values
	}
	if want := map[string][]int64{"acme": {6, 0, 0}, "beta": {0, 2, 0}, "-": {0, 1, 0}, "gamma": {0, 0, 2}}; !reflect.DeepEqual(series, want) {
		t.Errorf("series %v", series)
	}
	acme := r.Customers[0]
	if want := []FindingCount{{"optout_suppression", "recipient_opted_out", 1}, {"rate_limit", "quota_exceeded", 1}, {"rate_limit", "volume_spike", 1}}; !reflect.DeepEqual(acme.Findings, want) {
		t.Errorf("acme detail %+v", acme.Findings)
	}
}

func TestReportFilters(t *testing.T) {
	tests := []struct {
		name      string
		o         Options
		messages  int64
		customers []string
		span      time.Duration
		points    int
	}{
		{"one customer", Options{Since: base, Until: base.Add(3 * time.Hour), Customer: "beta"}, 2, []string{"beta"}, time.Hour, 3},
		{"unidentified", Options{Since: base, Until: base.Add(3 * time.Hour), Customer: "-"}, 1, []string{"-"}, time.Hour, 3},
		{"first hour", Options{Since: base, Until: base.Add(time.Hour)}, 6, []string{"acme"}, time.Hour, 1},
		{"last two hours", Options{Since: base.Add(time.Hour), Until: base.Add(3 * time.Hour)}, 5, []string{"beta", "gamma", "-"}, time.Hour, 2},
		{"month by day", Options{Since: base.Add(-29 * 24 * time.Hour), Until: base.Add(24 * time.Hour)}, 11, []string{"acme", "beta", "gamma", "-"}, 24 * time.Hour, 31},
		{"before", Options{Since: base.Add(-24 * time.Hour), Until: base}, 0, nil, time.Hour, 24},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := build(t, tt.o)
			var ids []string
			for _, c := range r.Customers {
				ids = append(ids, c.ID)
			}
			if r.Totals.Messages != tt.messages || !reflect.DeepEqual(ids, tt.customers) || r.Span != tt.span || len(r.Times) != tt.points {
				t.Fatalf("messages %d customers %v span %s points %d", r.Totals.Messages, ids, r.Span, len(r.Times))
			}
		})
	}
	if _, err := Build(context.Background(), recorded(t), Options{Since: base, Until: base}); err == nil {
		t.Fatal("empty period accepted")
	}
}

func TestRenderings(t *testing.T) {
	r := build(t, Options{Since: base, Until: base.Add(3 * time.Hour), Config: testConfig(), Standing: standing, Now: base.Add(3 * time.Hour)})
	t.Run("text", func(t *testing.T) {
		var b bytes.Buffer
		if err := r.Write(&b, "text"); err != nil {
			t.Fatal(err)
		}
		s := b.String()
		for _, want := range []string{"Messages     11 (15 recipients, 7.8 KiB)", "Rejected     3", "Recipients refused at RCPT  1",
			"Monitor mode: 1 messages", "Top offenders", "42.9%", "header_forgery      forged_received", "Volume spikes",
			"DMARC failures by domain", "bank.example", "FLAGGED: opted-out sends", "3/1000", "0.300% (act)", "Detail: acme",
			"(unidentified clients)", "note: standing of gamma: store down"} {
			if !strings.Contains(s, want) {
				t.Errorf("text lacks %q:\n%s", want, s)
			}
		}
	})
	t.Run("json", func(t *testing.T) {
		var b bytes.Buffer
		if err := r.Write(&b, "json"); err != nil {
			t.Fatal(err)
		}
		var back Report
		if err := json.Unmarshal(b.Bytes(), &back); err != nil {
			t.Fatal(err)
		}
		if back.Totals != r.Totals || len(back.Checks) != len(r.Checks) || len(back.Series) != 4 {
			t.Fatalf("json round trip: %+v", back.Totals)
		}
	})
	t.Run("csv", func(t *testing.T) {
		var b bytes.Buffer
		if err := r.Write(&b, "csv"); err != nil {
			t.Fatal(err)
		}
		rows, err := csv.NewReader(&b).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) != 5 || !reflect.DeepEqual(rows[0], CSVHeader) {
			t.Fatalf("csv rows %v", rows)
		}
		want := []string{"acme", "Acme Corp", "6", "7", "4000", "4", "0", "2", "0", "1", "0", "3", "1", "1", "1", "0", "3", "1000", "0.003000", "true", "optout_suppression/recipient_opted_out"}
		if !reflect.DeepEqual(rows[1], want) {
			t.Fatalf("acme row %v\nwant     %v", rows[1], want)
		}
	})
	t.Run("html", func(t *testing.T) {
		var b bytes.Buffer
		if err := r.Write(&b, "html"); err != nil {
			t.Fatal(err)
		}
		s := b.String()
		for _, want := range []string{`<svg id="volume-chart"`, `data-points="3"`, `data-series="4"`, `class="series" data-customer="acme" data-total="6"`,
			`class="mark spike" data-customer="acme" data-kind="volume_spike"`, `class="mark limit" data-customer="acme" data-kind="quota_exceeded"`,
			`<svg id="checks-chart"`, `data-check="header_forgery" data-action="reject" data-count="2"`, `id="fig-messages"><span class="n">11</span>`,
			`<tr data-customer="acme"><td>acme <span class="muted">Acme Corp</span>`, "@media print"} {
			if !strings.Contains(s, want) {
				t.Errorf("html lacks %q", want)
			}
		}
		// Self-contained and script-free.
		for _, bad := range []string{"<script", "src=", "href=\"http", "@import", "url("} {
			if strings.Contains(s, bad) {
				t.Errorf("html contains %q", bad)
			}
		}
	})
	t.Run("unknown", func(t *testing.T) {
		if err := r.Write(&bytes.Buffer{}, "pdf"); err == nil {
			t.Fatal("unknown format accepted")
		}
	})
}

func TestChartsEscapeAndBound(t *testing.T) {
	r := &Report{Since: base, Until: base.Add(2 * time.Hour), Span: time.Hour, Times: []time.Time{base, base.Add(time.Hour)}}
	for i := 0; i < 12; i++ {
		id := "c<" + string(rune('a'+i)) + ">"
		r.Series = append(r.Series, Series{Customer: id, Values: []int64{int64(i), 1}, Total: int64(i + 1)})
	}
	r.Checks = []CheckRow{{Check: "x<y", Finding: "f", Reject: 3}}
	v, c := r.VolumeChart(), r.ChecksChart()
	if strings.Contains(v, "c<") || strings.Contains(c, "x<y") {
		t.Fatal("labels not escaped")
	}
	if n := strings.Count(v, `class="series"`); n != maxLines {
		t.Fatalf("%d lines drawn, want %d (rest as others)", n, maxLines)
	}
	if !strings.Contains(v, `data-customer="others"`) {
		t.Fatal("no others line")
	}
	for _, n := range []struct{ in, want int64 }{{0, 1}, {1, 1}, {7, 10}, {11, 20}, {150, 200}, {400, 500}, {1000, 1000}} {
		if got := niceCeil(n.in); got != n.want {
			t.Errorf("niceCeil(%d) = %d, want %d", n.in, got, n.want)
		}
	}
}

func TestParseRange(t *testing.T) {
	now := time.Date(2026, 3, 2, 12, 30, 0, 0, time.UTC)
	day := 24 * time.Hour
	tests := []struct {
		since, from, to string
		wantSince       time.Time
		wantUntil       time.Time
		wantErr         string
	}{
		{"", "", "", now.Add(-day), now, ""},
		{"6h", "", "", now.Add(-6 * time.Hour), now, ""},
		{"7d", "", "", now.Add(-7 * day), now, ""},
		{"", "2026-02-01", "2026-02-28", time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), ""},
		{"", "2026-03-01T06:00:00Z", "", time.Date(2026, 3, 1, 6, 0, 0, 0, time.UTC), now, ""},
		{"", "", "2026-03-01", time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC), ""},
		{"24h", "2026-03-01", "", time.Time{}, time.Time{}, "not both"},
		{"x", "", "", time.Time{}, time.Time{}, "bad period"},
		{"-3h", "", "", time.Time{}, time.Time{}, "bad period"},
		{"0d", "", "", time.Time{}, time.Time{}, "bad period"},
		{"", "yesterday", "", time.Time{}, time.Time{}, "bad time"},
		{"", "2026-03-05", "2026-03-01", time.Time{}, time.Time{}, "empty period"},
	}
	for _, tt := range tests {
		t.Run(tt.since+tt.from+"_"+tt.to, func(t *testing.T) {
			s, u, err := ParseRange(tt.since, tt.from, tt.to, day, now)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || !s.Equal(tt.wantSince) || !u.Equal(tt.wantUntil) {
				t.Fatalf("got %s..%s (%v), want %s..%s", s, u, err, tt.wantSince, tt.wantUntil)
			}
		})
	}
}

func TestAxisTicks(t *testing.T) {
	for _, tc := range []struct {
		max  int64
		want string
	}{
		{0, "[0 1]"}, {1, "[0 1]"}, {3, "[0 1 2 3]"}, {5, "[0 1 2 3 4 5]"}, {6, "[0 2 4 6]"}, {7, "[0 2 4 6 8]"},
		{14, "[0 5 10 15]"}, {20, "[0 5 10 15 20]"}, {23, "[0 5 10 15 20 25]"}, {101, "[0 50 100 150]"}, {999, "[0 200 400 600 800 1000]"},
	} {
		if got := fmt.Sprint(axisTicks(tc.max)); got != tc.want {
			t.Errorf("axisTicks(%d) = %s, want %s", tc.max, got, tc.want)
		}
	}
}

// TestVolumeChartReadsRight: a single bucket is a dot at its value, the
// axis labels are round and evenly spaced, each series is labelled.
func TestVolumeChartReadsRight(t *testing.T) {
	r := &Report{Span: time.Hour, Times: []time.Time{time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)},
		Series: []Series{{Customer: "acme", Values: []int64{7}, Total: 7}, {Customer: "beta", Values: []int64{3}, Total: 3}}}
	svg := r.VolumeChart()
	if !strings.Contains(svg, `<circle class="point" data-customer="acme"`) || !strings.Contains(svg, `<circle class="point" data-customer="beta"`) {
		t.Errorf("single bucket not drawn as dots:\n%s", svg)
	}
	var labels []string
	for _, m := range regexp.MustCompile(`text-anchor="end" font-size="11" fill="#555">(\d+)<`).FindAllStringSubmatch(svg, -1) {
		labels = append(labels, m[1])
	}
	if strings.Join(labels, " ") != "0 2 4 6 8" {
		t.Errorf("y labels %v, want 0 2 4 6 8", labels)
	}
	for _, l := range []string{">acme (7)</text>", ">beta (3)</text>"} {
		if !strings.Contains(svg, l) {
			t.Errorf("legend lacks %s", l)
		}
	}
}
