// Package report computes the postmaster's reports from the decision
// record's counters (package events) and renders them as text, JSON, CSV
// or one self-contained HTML file with inline SVG charts (no JavaScript,
// printable). The admin dashboard is the same HTML.
//
// A report covers a period and optionally one customer: volume, messages
// accepted, held, deferred and rejected by check and by customer, top
// offenders, volume spikes, limit hits, opt-out repeaters, complaint rates
// and DMARC failures by domain, and each customer's detail.
package report

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/aupguard/aupguard/internal/checks/optout"
	"github.com/aupguard/aupguard/internal/checks/reputation"
	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/policy"
	"github.com/aupguard/aupguard/internal/engine/setup"
	"github.com/aupguard/aupguard/internal/observability/events"
	"github.com/aupguard/aupguard/internal/store"
)

// DailyAbove is the period above which a report counts by day, not hour.
const DailyAbove = 7 * 24 * time.Hour

// Source is where the counters come from (*events.Reader, *events.Recorder).
type Source interface {
	Aggregates(ctx context.Context, q events.AggQuery) ([]events.Bucket, error)
}

// StandingFunc returns a customer's current opt-out standing (flag,
// complaint rate); nil when the report goes without.
type StandingFunc func(ctx context.Context, customer string) (*optout.CustomerStatus, error)

// OptOutStanding reads standings through optout.Status.
func OptOutStanding(h *store.Handle, cfg *config.Config) StandingFunc {
	return func(ctx context.Context, id string) (*optout.CustomerStatus, error) {
		st, err := optout.Status(ctx, h, cfg, id)
		if err != nil {
			return nil, err
		}
		return &st, nil
	}
}

// Options select a report.
type Options struct {
	// Since and Until bound the period ([Since, Until)).
	Since, Until time.Time
	// Customer restricts the report to one customer ("" is provider-wide).
	Customer string
	// Config names the customers (names, modes, abuse contacts) and the
	// provider; it may be nil.
	Config *config.Config
	// Top is the length of the top-offenders table (default 10).
	Top int
	// Standing, when set, adds each customer's opt-out standing.
	Standing StandingFunc
	// Now is the report's generation time (default time.Now()).
	Now time.Time
	// Reputation, when set, adds bounce standings and blocklist states.
	Reputation ReputationFunc
	// Sections are the families' report sections (setup.ReportSection),
	// built in order into Report.Sections.
	Sections []setup.ReportSection
}

// Counts are message counts. Messages is every message decided; Accepted,
// Held, Deferred and Rejected split it by what was done.
type Counts struct {
	Messages   int64 `json:"messages"`
	Recipients int64 `json:"recipients"`
	Bytes      int64 `json:"bytes"`
	Accepted   int64 `json:"accepted"`
	Held       int64 `json:"held"`
	Deferred   int64 `json:"deferred"`
	Rejected   int64 `json:"rejected"`
	// RcptRefused counts recipients refused (deferred or rejected) at RCPT.
	RcptRefused int64 `json:"recipients_refused"`
	// WouldRefuse counts monitor-mode messages accepted that enforcement
	// would have held, deferred or rejected.
	WouldRefuse int64 `json:"monitor_would_refuse"`
}

// Stopped is what the gateway stopped: messages held, deferred or rejected,
// and recipients refused.
func (c Counts) Stopped() int64 { return c.Held + c.Deferred + c.Rejected + c.RcptRefused }

func (c *Counts) add(o Counts) {
	c.Messages += o.Messages
	c.Recipients += o.Recipients
	c.Bytes += o.Bytes
	c.Accepted += o.Accepted
	c.Held += o.Held
	c.Deferred += o.Deferred
	c.Rejected += o.Rejected
	c.RcptRefused += o.RcptRefused
	c.WouldRefuse += o.WouldRefuse
}

// Report is a computed report.
type Report struct {
	Generated time.Time `json:"generated"`
	Since     time.Time `json:"since"`
	Until     time.Time `json:"until"`
	// Customer is the customer the report is restricted to ("" for all).
	Customer string `json:"customer,omitempty"`
	// Span is the time series' bucket: an hour, or a day above DailyAbove.
	Span   time.Duration `json:"span"`
	Totals Counts        `json:"totals"`
	// Customers are every customer with decisions, most messages first.
	Customers []CustomerSummary `json:"customers"`
	// Checks are decisions by deciding check and finding.
	Checks []CheckRow `json:"checks"`
	// TopOffenders are the customers with the most stopped, most first.
	TopOffenders []CustomerSummary `json:"top_offenders"`
	Spikes       []Mark            `json:"spikes"`
	LimitHits    []Mark            `json:"limit_hits"`
	OptOut       []OptOutRow       `json:"optout"`
	// OptOutSources are the opt-outs recorded on each customer's list by
	// source, since the list began (customers with any, most first).
	OptOutSources []SourceRow `json:"optout_sources"`
	DMARC         []DMARCRow  `json:"dmarc_failures"`
	// Times are the buckets of Series.
	Times  []time.Time `json:"times"`
	Series []Series    `json:"series"`
	// Errors lists what could not be read (a standing); the rest stands.
	Errors []string `json:"errors,omitempty"`
	// Bounces are the customers' current bounce standings (reputation.go).
	Bounces []reputation.Standing `json:"bounces,omitempty"`
	// Blocklists are the egress addresses' listing states (provider report only).
	Blocklists []reputation.Listing `json:"blocklists,omitempty"`
	// Sections are the families' sections by name (Options.Sections).
	Sections map[string]any `json:"sections,omitempty"`
	// sections are the specs of Sections, in order (the HTML renders
	// them).
	sections []setup.ReportSection
}

// CustomerSummary is one customer's figures.
type CustomerSummary struct {
	ID   string `json:"id"`
	Name string `json:"name,omitempty"`
	Mode string `json:"mode,omitempty"`
	Counts
	Stopped   int64 `json:"stopped"`
	Spikes    int64 `json:"spikes"`
	LimitHits int64 `json:"limit_hits"`
	// Findings are the customer's decisions by check and finding, most first.
	Findings []FindingCount         `json:"findings,omitempty"`
	Standing *optout.CustomerStatus `json:"standing,omitempty"`
}

// FindingCount is a count of one check's finding.
type FindingCount struct {
	Check   string `json:"check"`
	Finding string `json:"finding"`
	Count   int64  `json:"count"`
}

// CheckRow counts decisions of one check's finding by verdict. Monitor
// counts the verdicts not enforced (monitor mode); Findings counts every
// occurrence of the finding, deciding or not.
type CheckRow struct {
	Check      string `json:"check"`
	Finding    string `json:"finding"`
	Accept     int64  `json:"accept"`
	Quarantine int64  `json:"quarantine"`
	Defer      int64  `json:"defer"`
	Reject     int64  `json:"reject"`
	Monitor    int64  `json:"monitor"`
	Findings   int64  `json:"findings"`
}

// Decisions is the row's number of decisions.
func (r CheckRow) Decisions() int64 { return r.Accept + r.Quarantine + r.Defer + r.Reject }

// Mark is a spike or limit hit of a customer in a bucket.
type Mark struct {
	Customer string    `json:"customer"`
	Time     time.Time `json:"time"`
	Kind     string    `json:"kind"` // the finding: volume_spike, quota_exceeded...
	Count    int64     `json:"count"`
}

// SourceRow is one customer's recorded opt-outs by source.
type SourceRow struct {
	Customer string `json:"customer"`
	// Counts are in optout.SourceOrder: unsubscribe link, complaint, API,
	// CLI, import.
	Counts []int64 `json:"counts"`
	Total  int64   `json:"total"`
}

// SourceNames are the column names of SourceRow.Counts.
var SourceNames = []string{"unsubscribe link", "complaint", "API", "CLI", "import"}

// OptOutRow is a customer's sends to opted-out or suppressed recipients in
// the period, with the current standing.
type OptOutRow struct {
	Customer   string                 `json:"customer"`
	OptedOut   int64                  `json:"opted_out"`
	Suppressed int64                  `json:"suppressed"`
	Escalated  int64                  `json:"escalations"`
	Standing   *optout.CustomerStatus `json:"standing,omitempty"`
}

// DMARCRow counts DMARC failures of one author domain.
type DMARCRow struct {
	Domain   string `json:"domain"`
	Customer string `json:"customer"`
	Finding  string `json:"finding"`
	Count    int64  `json:"count"`
}

// Series is a customer's messages per bucket.
type Series struct {
	Customer string  `json:"customer"`
	Values   []int64 `json:"values"`
	Total    int64   `json:"total"`
}

// Build computes the report from src: the counters of the period, read
// once, tallied by customer, check and finding (tally), then each table
// made from the tallies.
func Build(ctx context.Context, src Source, o Options) (*Report, error) {
	if !o.Since.Before(o.Until) {
		return nil, fmt.Errorf("report: empty period %s..%s", o.Since.Format(time.RFC3339), o.Until.Format(time.RFC3339))
	}
	if o.Top <= 0 {
		o.Top = config.DefaultReportTop
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	q := events.AggQuery{Since: o.Since, Until: o.Until, Customer: o.Customer, Daily: o.Until.Sub(o.Since) > DailyAbove}
	bs, err := src.Aggregates(ctx, q)
	if err != nil {
		return nil, err
	}
	r := &Report{Generated: o.Now.UTC(), Since: o.Since.UTC(), Until: o.Until.UTC(), Customer: o.Customer, Span: time.Hour}
	if q.Daily {
		r.Span = 24 * time.Hour
	}
	for t := o.Since.UTC().Truncate(r.Span); t.Before(o.Until); t = t.Add(r.Span) {
		r.Times = append(r.Times, t)
	}
	t := newTally(r.Times)
	for _, b := range bs {
		t.add(b)
	}
	r.Customers = t.customerRows(ctx, o, r)
	r.TopOffenders = topOffenders(r.Customers, o.Top)
	r.Checks = t.checkRows()
	r.Spikes, r.LimitHits = t.markRows()
	r.OptOut, r.OptOutSources = optOutRows(r.Customers, t.optRows)
	r.DMARC = t.dmarcRows()
	r.Series = t.seriesRows(r.Customers)
	addReputation(ctx, r, o)
	addSections(ctx, r, o)
	return r, nil
}

// findingTallies are the report tables of the findings that declare one
// (policy.FindingSpec.Tally), from the registered families' specs.
func findingTallies() map[string]string {
	out := map[string]string{}
	for _, f := range setup.Families() {
		for _, c := range f.Checks {
			for _, fs := range c.Spec.Findings {
				if fs.Tally != "" {
					out[fs.Name] = fs.Tally
				}
			}
		}
	}
	return out
}

// tally is the period's counters summed by customer, check, finding,
// DMARC domain and time bucket.
type tally struct {
	kinds    map[string]string // finding → policy.Tally*
	index    map[time.Time]int
	times    int
	custs    map[string]*CustomerSummary
	findings map[string]map[[2]string]int64
	checks   map[[2]string]*CheckRow
	optRows  map[string]*OptOutRow
	dmarc    map[[3]string]int64
	series   map[string][]int64
	marks    map[Mark]int64
}

func newTally(times []time.Time) *tally {
	t := &tally{kinds: findingTallies(), index: map[time.Time]int{}, times: len(times),
		custs: map[string]*CustomerSummary{}, findings: map[string]map[[2]string]int64{}, checks: map[[2]string]*CheckRow{},
		optRows: map[string]*OptOutRow{}, dmarc: map[[3]string]int64{}, series: map[string][]int64{}, marks: map[Mark]int64{}}
	for i, x := range times {
		t.index[x] = i
	}
	return t
}

// add sums one bucket of counters.
func (t *tally) add(b events.Bucket) {
	cs := t.custs[b.Customer]
	if cs == nil {
		cs = &CustomerSummary{ID: b.Customer}
		t.custs[b.Customer] = cs
		t.findings[b.Customer] = map[[2]string]int64{}
	}
	c := countsOf(b.Counts)
	cs.Counts.add(c)
	if i, ok := t.index[b.Start]; ok {
		if t.series[b.Customer] == nil {
			t.series[b.Customer] = make([]int64, t.times)
		}
		t.series[b.Customer][i] += c.Messages
	}
	for f, n := range b.Counts {
		prefix, p := events.ParseField(f)
		switch {
		case prefix == events.PrefixDecision && len(p) == 5:
			t.addDecision(b.Customer, p, n)
		case prefix == events.PrefixResult && len(p) == 3:
			t.addResult(cs, b, p, n)
		case prefix == events.PrefixDMARC && len(p) == 2:
			t.dmarc[[3]string{p[0], b.Customer, p[1]}] += n
		}
	}
}

// row returns the check row of check and finding, made on first use.
func (t *tally) row(check, finding string) *CheckRow {
	k := [2]string{check, finding}
	row := t.checks[k]
	if row == nil {
		row = &CheckRow{Check: check, Finding: finding}
		t.checks[k] = row
	}
	return row
}

// addDecision counts a decision: p is stage|check|finding|action|effective.
func (t *tally) addDecision(customer string, p []string, n int64) {
	row := t.row(p[1], p[2])
	switch p[3] {
	case "accept":
		row.Accept += n
	case "quarantine":
		row.Quarantine += n
	case "defer":
		row.Defer += n
	case "reject":
		row.Reject += n
	}
	if p[3] != p[4] {
		row.Monitor += n
	}
	if p[3] != "accept" {
		t.findings[customer][[2]string{p[1], p[2]}] += n
	}
}

// addResult counts a finding, deciding or not: p is check|finding|action.
func (t *tally) addResult(cs *CustomerSummary, b events.Bucket, p []string, n int64) {
	t.row(p[0], p[1]).Findings += n
	kind := t.kinds[p[1]]
	switch kind {
	case policy.TallySpike:
		cs.Spikes += n
		t.marks[Mark{Customer: b.Customer, Time: b.Start, Kind: p[1]}] += n
	case policy.TallyLimit:
		cs.LimitHits += n
		t.marks[Mark{Customer: b.Customer, Time: b.Start, Kind: p[1]}] += n
	case policy.TallyOptedOut, policy.TallySuppressed, policy.TallyEscalated:
		or := t.optRows[b.Customer]
		if or == nil {
			or = &OptOutRow{Customer: b.Customer}
			t.optRows[b.Customer] = or
		}
		switch kind {
		case policy.TallyOptedOut:
			or.OptedOut += n
		case policy.TallySuppressed:
			or.Suppressed += n
		default:
			or.Escalated += n
		}
	}
}

// customerRows are the customers, most messages first, with their names,
// findings and standings; it adds them to r's totals and a standing that
// cannot be read to r's errors.
func (t *tally) customerRows(ctx context.Context, o Options, r *Report) []CustomerSummary {
	var cfgCust map[string]config.Customer
	if o.Config != nil {
		cfgCust = map[string]config.Customer{}
		for _, c := range o.Config.Customers {
			cfgCust[c.ID] = c
		}
	}
	var out []CustomerSummary
	for id, cs := range t.custs {
		if c, ok := cfgCust[id]; ok {
			cs.Name, cs.Mode = c.Name, c.Mode
		}
		cs.Stopped = cs.Counts.Stopped()
		for k, n := range t.findings[id] {
			cs.Findings = append(cs.Findings, FindingCount{Check: k[0], Finding: k[1], Count: n})
		}
		sort.Slice(cs.Findings, func(i, j int) bool {
			a, b := cs.Findings[i], cs.Findings[j]
			if a.Count != b.Count {
				return a.Count > b.Count
			}
			return a.Check+a.Finding < b.Check+b.Finding
		})
		if o.Standing != nil && id != events.Unidentified {
			st, err := o.Standing(ctx, id)
			if err != nil {
				r.Errors = append(r.Errors, fmt.Sprintf("standing of %s: %v", id, err))
			} else {
				cs.Standing = st
			}
		}
		r.Totals.add(cs.Counts)
		out = append(out, *cs)
	}
	sort.Strings(r.Errors)
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Messages != b.Messages {
			return a.Messages > b.Messages
		}
		return a.ID < b.ID
	})
	return out
}

// topOffenders are the customers that had mail stopped (or would have,
// in monitor mode), most stopped first, at most top.
func topOffenders(custs []CustomerSummary, top int) []CustomerSummary {
	var out []CustomerSummary
	for _, cs := range custs {
		if cs.Stopped > 0 || cs.WouldRefuse > 0 {
			out = append(out, cs)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Stopped != b.Stopped {
			return a.Stopped > b.Stopped
		}
		return a.WouldRefuse > b.WouldRefuse
	})
	if len(out) > top {
		out = out[:top]
	}
	return out
}

// checkRows are the checks' findings, most decisions first.
func (t *tally) checkRows() []CheckRow {
	var out []CheckRow
	for _, row := range t.checks {
		out = append(out, *row)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Decisions() != b.Decisions() {
			return a.Decisions() > b.Decisions()
		}
		if a.Findings != b.Findings {
			return a.Findings > b.Findings
		}
		return a.Check+"/"+a.Finding < b.Check+"/"+b.Finding
	})
	return out
}

// markRows are the spikes and the limit hits, in time order.
func (t *tally) markRows() (spikes, limits []Mark) {
	for m, n := range t.marks {
		m.Count = n
		if t.kinds[m.Kind] == policy.TallySpike {
			spikes = append(spikes, m)
		} else {
			limits = append(limits, m)
		}
	}
	sortMarks(spikes)
	sortMarks(limits)
	return spikes, limits
}

// optOutRows are the opt-out table (sends to opted-out recipients, and
// every customer flagged or with complaints) and the opt-outs recorded
// by source, from the period's rows and the customers' standings.
func optOutRows(custs []CustomerSummary, rows map[string]*OptOutRow) ([]OptOutRow, []SourceRow) {
	standing := map[string]*optout.CustomerStatus{}
	for _, cs := range custs {
		standing[cs.ID] = cs.Standing
		// A flagged customer or one with complaints is listed even
		// without opted-out sends in the period.
		if st := cs.Standing; st != nil && rows[cs.ID] == nil && (st.Flag != nil || st.Complaints > 0 || st.OptedOutSends > 0) {
			rows[cs.ID] = &OptOutRow{Customer: cs.ID}
		}
	}
	var sources []SourceRow
	for _, cs := range custs {
		if st := cs.Standing; st != nil && st.OptOutsRecorded() > 0 {
			row := SourceRow{Customer: cs.ID, Total: st.OptOutsRecorded()}
			for _, src := range optout.SourceOrder {
				row.Counts = append(row.Counts, st.Sources[src])
			}
			sources = append(sources, row)
		}
	}
	sort.Slice(sources, func(i, j int) bool {
		a, b := sources[i], sources[j]
		if a.Total != b.Total {
			return a.Total > b.Total
		}
		return a.Customer < b.Customer
	})
	var out []OptOutRow
	for id, row := range rows {
		row.Standing = standing[id]
		out = append(out, *row)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.OptedOut+a.Suppressed != b.OptedOut+b.Suppressed {
			return a.OptedOut+a.Suppressed > b.OptedOut+b.Suppressed
		}
		return a.Customer < b.Customer
	})
	return out, sources
}

// dmarcRows are the DMARC failures by author domain, most first.
func (t *tally) dmarcRows() []DMARCRow {
	var out []DMARCRow
	for k, n := range t.dmarc {
		out = append(out, DMARCRow{Domain: k[0], Customer: k[1], Finding: k[2], Count: n})
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Count != b.Count {
			return a.Count > b.Count
		}
		return a.Domain+a.Customer+a.Finding < b.Domain+b.Customer+b.Finding
	})
	return out
}

// seriesRows are the customers' messages per bucket, in customer order.
func (t *tally) seriesRows(custs []CustomerSummary) []Series {
	var out []Series
	for _, cs := range custs {
		if v := t.series[cs.ID]; v != nil {
			s := Series{Customer: cs.ID, Values: v}
			for _, x := range v {
				s.Total += x
			}
			out = append(out, s)
		}
	}
	return out
}

// addSections builds the families' report sections (Options.Sections)
// into r.Sections; a section that fails is listed in r.Errors.
func addSections(ctx context.Context, r *Report, o Options) {
	if len(o.Sections) == 0 {
		return
	}
	q := setup.ReportQuery{Since: o.Since, Until: o.Until, Customer: o.Customer, Config: o.Config}
	for _, cs := range r.Customers {
		q.Customers = append(q.Customers, cs.ID)
	}
	for _, s := range o.Sections {
		v, err := s.Build(ctx, q)
		if err != nil {
			r.Errors = append(r.Errors, fmt.Sprintf("%s: %v", s.Name, err))
			continue
		}
		if v == nil {
			continue
		}
		if r.Sections == nil {
			r.Sections = map[string]any{}
		}
		r.Sections[s.Name] = v
		r.sections = append(r.sections, s)
	}
}

func sortMarks(ms []Mark) {
	sort.Slice(ms, func(i, j int) bool {
		if !ms[i].Time.Equal(ms[j].Time) {
			return ms[i].Time.Before(ms[j].Time)
		}
		if ms[i].Customer != ms[j].Customer {
			return ms[i].Customer < ms[j].Customer
		}
		return ms[i].Kind < ms[j].Kind
	})
}

// countsOf reads the message counts of one bucket.
func countsOf(m map[string]int64) Counts {
	c := Counts{
		Messages: m[events.FieldMessages], Recipients: m[events.FieldRcpts], Bytes: m[events.FieldBytes],
		Accepted: m[events.PrefixAction+"accept"], Held: m[events.PrefixAction+"quarantine"],
		Deferred: m[events.PrefixAction+"defer"], Rejected: m[events.PrefixAction+"reject"],
		WouldRefuse: m[events.PrefixWouldBe+"quarantine"] + m[events.PrefixWouldBe+"defer"] + m[events.PrefixWouldBe+"reject"],
	}
	for f, n := range m {
		if prefix, p := events.ParseField(f); prefix == events.PrefixDecision && len(p) == 5 && p[0] == "rcpt" &&
			(p[4] == "defer" || p[4] == "reject") {
			c.RcptRefused += n
		}
	}
	return c
}

// Title is the report's title.
func (r *Report) Title() string {
	who := "all customers"
	if r.Customer != "" {
		who = "customer " + r.Customer
	}
	return fmt.Sprintf("aupguard report, %s, %s", who, r.Period())
}

// Period renders the report's period in UTC.
func (r *Report) Period() string {
	const f = "2006-01-02 15:04"
	return r.Since.Format(f) + " to " + r.Until.Format(f) + " UTC"
}

// Stopped reports whether anything of the report's was stopped or would
// have been (monitor mode).
func (r *Report) Stopped() bool { return r.Totals.Stopped() > 0 || r.Totals.WouldRefuse > 0 }

// customerLabel names a customer for display.
func customerLabel(id string) string {
	if id == events.Unidentified {
		return "(unidentified clients)"
	}
	return id
}

// humanBytes renders a byte count.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// pct renders part/whole as a percentage.
func pct(part, whole int64) string {
	if whole == 0 {
		return "-"
	}
	return strings.TrimSuffix(strings.TrimSuffix(fmt.Sprintf("%.1f", 100*float64(part)/float64(whole)), "0"), ".") + "%"
}
