package report

import (
	"fmt"
	"html"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/aupguard/aupguard/internal/checks/optout"
)

// Chart geometry (SVG user units).
const (
	chartW   = 960
	chartH   = 300
	marginL  = 56
	marginR  = 16
	marginT  = 16
	marginB  = 40
	maxLines = 8 // customers drawn on their own; the rest are summed as "others"
)

// palette is a colour-blind-friendly qualitative palette (Okabe-Ito).
var palette = []string{"#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000", "#999999"}

// actionColors colour the verdicts the same everywhere.
var actionColors = map[string]string{"accept": "#8fbf8f", "quarantine": "#E69F00", "defer": "#56B4E9", "reject": "#D55E00"}

// niceCeil rounds a chart's maximum up to 1, 2 or 5 times a power of ten.
func niceCeil(v int64) int64 {
	if v <= 1 {
		return 1
	}
	p := int64(math.Pow(10, math.Floor(math.Log10(float64(v)))))
	for _, m := range []int64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

// axisTicks returns round tick values for a y axis from 0 covering max:
// the step is 1, 2 or 5 times a power of ten, at most five steps, and the
// top is the last tick (so gridlines are evenly spaced and every label is
// a round number: 0 2 4 6, never 0 1 2 3 5).
func axisTicks(max int64) []int64 {
	if max < 1 {
		max = 1
	}
	step := int64(1)
	for {
		for _, m := range []int64{1, 2, 5} {
			if st := m * step; (max+st-1)/st <= 5 {
				n := (max + st - 1) / st
				ticks := make([]int64, n+1)
				for i := range ticks {
					ticks[i] = int64(i) * st
				}
				return ticks
			}
		}
		step *= 10
	}
}

// chartSeries returns the lines to draw: the biggest customers, and the
// rest summed as "others".
func (r *Report) chartSeries() []Series {
	ss := append([]Series(nil), r.Series...)
	sort.SliceStable(ss, func(i, j int) bool { return ss[i].Total > ss[j].Total })
	if len(ss) <= maxLines {
		return ss
	}
	other := Series{Customer: "others", Values: make([]int64, len(r.Times))}
	for _, s := range ss[maxLines-1:] {
		for i, v := range s.Values {
			other.Values[i] += v
		}
		other.Total += s.Total
	}
	return append(ss[:maxLines-1], other)
}

func (r *Report) timeLabel(t time.Time) string {
	if r.Span >= 24*time.Hour {
		return t.Format("Jan 2")
	}
	if r.Until.Sub(r.Since) > 24*time.Hour {
		return t.Format("Jan 2 15h")
	}
	return t.Format("15:04")
}

// VolumeChart renders messages over time per customer as inline SVG, with
// spikes (triangles) and limit hits (diamonds) marked on the customer's
// line. Every element carries data-* attributes and a <title> (tooltip,
// and what a screen reader or a test reads).
func (r *Report) VolumeChart() string {
	ss := r.chartSeries()
	n := len(r.Times)
	var max int64
	for _, s := range ss {
		for _, v := range s.Values {
			if v > max {
				max = v
			}
		}
	}
	ticks := axisTicks(max)
	top := ticks[len(ticks)-1]
	plotW, plotH := float64(chartW-marginL-marginR), float64(chartH-marginT-marginB)
	x := func(i int) float64 {
		if n <= 1 {
			return marginL + plotW/2
		}
		return marginL + plotW*float64(i)/float64(n-1)
	}
	y := func(v int64) float64 { return marginT + plotH - plotH*float64(v)/float64(top) }

	var b strings.Builder
	fmt.Fprintf(&b, `<svg id="volume-chart" class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" role="img" aria-labelledby="volume-title" data-points="%d" data-series="%d" data-max="%d">`,
		chartW, chartH+20*((len(ss)+3)/4), n, len(ss), max)
	fmt.Fprintf(&b, `<title id="volume-title">Messages per %s by customer, %s</title>`, spanName(r.Span), html.EscapeString(r.Period()))
	// Grid and y axis.
	for _, v := range ticks {
		fmt.Fprintf(&b, `<line class="grid" x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#ddd"/>`, marginL, chartW-marginR, y(v), y(v))
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end" font-size="11" fill="#555">%d</text>`, marginL-6, y(v)+4, v)
	}
	// X labels: about eight.
	step := (n + 7) / 8
	if step < 1 {
		step = 1
	}
	for i := 0; i < n; i += step {
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle" font-size="11" fill="#555">%s</text>`, x(i), chartH-marginB+16, html.EscapeString(r.timeLabel(r.Times[i])))
	}
	fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#888"/>`, marginL, chartW-marginR, y(0), y(0))
	if len(ss) == 0 {
		fmt.Fprintf(&b, `<text class="empty" x="%d" y="%d" text-anchor="middle" font-size="14" fill="#777">no mail in this period</text>`, chartW/2, chartH/2)
	}
	idx := map[string]int{}
	for i, s := range ss {
		idx[s.Customer] = i
		col := palette[i%len(palette)]
		pts := make([]string, n)
		for j, v := range s.Values {
			pts[j] = fmt.Sprintf("%.1f,%.1f", x(j), y(v))
		}
		fmt.Fprintf(&b, `<polyline class="series" data-customer="%s" data-total="%d" fill="none" stroke="%s" stroke-width="2" points="%s"><title>%s: %d messages</title></polyline>`,
			html.EscapeString(s.Customer), s.Total, col, strings.Join(pts, " "), html.EscapeString(customerLabel(s.Customer)), s.Total)
		if n == 1 {
			// One bucket: a dot where the value is, not a line from zero
			// (a one-point polyline would not show at all).
			fmt.Fprintf(&b, `<circle class="point" data-customer="%s" cx="%.1f" cy="%.1f" r="4" fill="%s"><title>%s: %d messages</title></circle>`,
				html.EscapeString(s.Customer), x(0), y(s.Values[0]), col, html.EscapeString(customerLabel(s.Customer)), s.Total)
		}
	}
	// Marks sit on their customer's line ("others" for the rest).
	tIdx := map[time.Time]int{}
	for i, t := range r.Times {
		tIdx[t] = i
	}
	mark := func(m Mark, class string) {
		si, ok := idx[m.Customer]
		if !ok {
			si, ok = idx["others"]
		}
		ti, okT := tIdx[m.Time]
		if !ok || !okT {
			return
		}
		px, py := x(ti), y(ss[si].Values[ti])
		shape := fmt.Sprintf(`<path d="M%.1f %.1f l6 10 h-12 z" fill="#c00" stroke="#fff"/>`, px, py-12)
		if class == "limit" {
			shape = fmt.Sprintf(`<path d="M%.1f %.1f l6 6 l-6 6 l-6 -6 z" fill="#e69f00" stroke="#fff"/>`, px, py-6)
		}
		fmt.Fprintf(&b, `<g class="mark %s" data-customer="%s" data-kind="%s" data-time="%s" data-count="%d">%s<title>%s %s at %s: %d</title></g>`,
			class, html.EscapeString(m.Customer), html.EscapeString(m.Kind), m.Time.Format(time.RFC3339), m.Count, shape,
			html.EscapeString(customerLabel(m.Customer)), html.EscapeString(m.Kind), m.Time.Format("2006-01-02 15:04"), m.Count)
	}
	for _, m := range r.Spikes {
		mark(m, "spike")
	}
	for _, m := range r.LimitHits {
		mark(m, "limit")
	}
	// Legend.
	for i, s := range ss {
		lx, ly := marginL+(i%4)*220, chartH+(i/4)*20
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="12" height="12" fill="%s"/><text x="%d" y="%d" font-size="12">%s (%d)</text>`,
			lx, ly-10, palette[i%len(palette)], lx+18, ly, html.EscapeString(customerLabel(s.Customer)), s.Total)
	}
	b.WriteString(`</svg>`)
	return b.String()
}

// ChecksChart renders decisions by check as horizontal stacked bars, one
// segment per verdict.
func (r *Report) ChecksChart() string {
	type bar struct {
		check string
		by    map[string]int64
		total int64
	}
	byCheck := map[string]*bar{}
	for _, c := range r.Checks {
		b := byCheck[c.Check]
		if b == nil {
			b = &bar{check: c.Check, by: map[string]int64{}}
			byCheck[c.Check] = b
		}
		for a, n := range map[string]int64{"accept": c.Accept, "quarantine": c.Quarantine, "defer": c.Defer, "reject": c.Reject} {
			b.by[a] += n
			b.total += n
		}
	}
	var bars []*bar
	for _, b := range byCheck {
		if b.total > 0 {
			bars = append(bars, b)
		}
	}
	sort.Slice(bars, func(i, j int) bool {
		if bars[i].total != bars[j].total {
			return bars[i].total > bars[j].total
		}
		return bars[i].check < bars[j].check
	})
	const rowH, labelW = 24, 200
	h := marginT + rowH*len(bars) + 50
	var max int64
	for _, b := range bars {
		if b.total > max {
			max = b.total
		}
	}
	top := niceCeil(max)
	plotW := float64(chartW - labelW - marginR - 60)
	var sb strings.Builder
	fmt.Fprintf(&sb, `<svg id="checks-chart" class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" role="img" aria-labelledby="checks-title" data-bars="%d">`, chartW, h, len(bars))
	fmt.Fprintf(&sb, `<title id="checks-title">Decisions by check and verdict, %s</title>`, html.EscapeString(r.Period()))
	if len(bars) == 0 {
		fmt.Fprintf(&sb, `<text class="empty" x="%d" y="%d" text-anchor="middle" font-size="14" fill="#777">no check decided anything in this period</text>`, chartW/2, marginT+16)
	}
	for i, b := range bars {
		yy := marginT + i*rowH
		fmt.Fprintf(&sb, `<text x="%d" y="%d" text-anchor="end" font-size="12">%s</text>`, labelW-8, yy+15, html.EscapeString(b.check))
		xx := float64(labelW)
		for _, a := range []string{"reject", "defer", "quarantine", "accept"} {
			n := b.by[a]
			if n == 0 {
				continue
			}
			w := plotW * float64(n) / float64(top)
			fmt.Fprintf(&sb, `<rect class="bar" data-check="%s" data-action="%s" data-count="%d" x="%.1f" y="%d" width="%.1f" height="%d" fill="%s"><title>%s %s: %d</title></rect>`,
				html.EscapeString(b.check), a, n, xx, yy+2, w, rowH-6, actionColors[a], html.EscapeString(b.check), a, n)
			xx += w
		}
		fmt.Fprintf(&sb, `<text x="%.1f" y="%d" font-size="12" fill="#333">%d</text>`, xx+6, yy+15, b.total)
	}
	ly := marginT + rowH*len(bars) + 24
	for i, a := range []string{"reject", "defer", "quarantine", "accept"} {
		lx := labelW + i*130
		fmt.Fprintf(&sb, `<rect x="%d" y="%d" width="12" height="12" fill="%s"/><text x="%d" y="%d" font-size="12">%s</text>`, lx, ly-10, actionColors[a], lx+18, ly, a)
	}
	sb.WriteString(`</svg>`)
	return sb.String()
}

func spanName(d time.Duration) string {
	if d >= 24*time.Hour {
		return "day"
	}
	return "hour"
}

// rateTicks returns round tick values (fractions) for a rate axis from 0
// covering max: the step is 1, 2 or 5 times a power of ten, at most five
// steps, the top is the last tick.
func rateTicks(max float64) []float64 {
	if max <= 0 {
		max = 0.001
	}
	step := math.Pow(10, math.Floor(math.Log10(max/5)))
	for {
		for _, m := range []float64{1, 2, 5} {
			st := m * step
			n := math.Ceil(max/st - 1e-9)
			if n <= 5 {
				ticks := make([]float64, int(n)+1)
				for i := range ticks {
					ticks[i] = float64(i) * st
				}
				return ticks
			}
		}
		step *= 10
	}
}

// pctLabel prints a fraction as a percentage with no more digits than the
// tick step needs.
func pctLabel(v, step float64) string {
	d := 0
	for s := step * 100; s < 1 && d < 6; s *= 10 {
		d++
	}
	return fmt.Sprintf("%.*f%%", d, v*100)
}

// ComplaintTrendChart renders a customer's complaint rate over time as
// inline SVG, with the warn and act thresholds drawn as labelled lines
// (the y axis always reaches above act). A single bucket is a dot, not a
// line from zero; a bucket with nothing delivered has no rate and breaks
// the line.
func ComplaintTrendChart(pts []optout.TrendPoint, warn, act float64) string {
	max := act * 1.2
	for _, p := range pts {
		if p.Delivered > 0 && p.Rate > max {
			max = p.Rate
		}
	}
	ticks := rateTicks(max)
	top := ticks[len(ticks)-1]
	n := len(pts)
	plotW, plotH := float64(chartW-marginL-marginR-60), float64(chartH-marginT-marginB)
	x := func(i int) float64 {
		if n <= 1 {
			return marginL + plotW/2
		}
		return marginL + plotW*float64(i)/float64(n-1)
	}
	y := func(v float64) float64 { return marginT + plotH - plotH*v/top }
	label := func(t time.Time) string { return t.Format("Jan 2 15h") }

	var b strings.Builder
	fmt.Fprintf(&b, `<svg id="complaint-trend" class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" role="img" aria-labelledby="trend-title" data-points="%d">`, chartW, chartH+20, n)
	b.WriteString(`<title id="trend-title">Complaint rate (complaints / delivered) over the complaint window</title>`)
	for _, v := range ticks {
		fmt.Fprintf(&b, `<line class="grid" x1="%d" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#ddd"/>`, marginL, marginL+plotW, y(v), y(v))
		fmt.Fprintf(&b, `<text class="tick" x="%d" y="%.1f" text-anchor="end" font-size="11" fill="#555">%s</text>`, marginL-6, y(v)+4, pctLabel(v, ticks[1]))
	}
	step := (n + 7) / 8
	if step < 1 {
		step = 1
	}
	for i := 0; i < n; i += step {
		fmt.Fprintf(&b, `<text class="xlabel" x="%.1f" y="%d" text-anchor="middle" font-size="11" fill="#555">%s</text>`, x(i), chartH-marginB+16, html.EscapeString(label(pts[i].Start)))
	}
	fmt.Fprintf(&b, `<line x1="%d" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#888"/>`, marginL, marginL+plotW, y(0), y(0))
	for _, th := range []struct {
		name, col string
		v         float64
	}{{"warn", "#E69F00", warn}, {"act", "#D55E00", act}} {
		fmt.Fprintf(&b, `<g class="threshold" data-threshold="%s" data-value="%g"><line x1="%d" x2="%.1f" y1="%.1f" y2="%.1f" stroke="%s" stroke-dasharray="6 4" stroke-width="1.5"/><text x="%.1f" y="%.1f" font-size="12" fill="%s">%s %s</text></g>`,
			th.name, th.v, marginL, marginL+plotW, y(th.v), y(th.v), th.col, marginL+plotW+6, y(th.v)+4, th.col, th.name, strconv.FormatFloat(th.v*100, 'g', 6, 64)+"%")
	}
	if n == 0 {
		fmt.Fprintf(&b, `<text class="empty" x="%d" y="%d" text-anchor="middle" font-size="14" fill="#777">nothing delivered or complained about in the window</text>`, chartW/2, chartH/2)
	}
	// Runs of buckets with a rate are drawn as lines; a lone one as a dot.
	var run []string
	flush := func() {
		if len(run) > 1 {
			fmt.Fprintf(&b, `<polyline class="series" fill="none" stroke="%s" stroke-width="2" points="%s"/>`, palette[0], strings.Join(run, " "))
		}
		run = nil
	}
	for i, p := range pts {
		if p.Delivered == 0 {
			flush()
			continue
		}
		run = append(run, fmt.Sprintf("%.1f,%.1f", x(i), y(p.Rate)))
		fmt.Fprintf(&b, `<circle class="point" data-start="%s" data-complaints="%d" data-delivered="%d" cx="%.1f" cy="%.1f" r="3" fill="%s"><title>%s: %d complaints of %d delivered (%s)</title></circle>`,
			p.Start.Format(time.RFC3339), p.Complaints, p.Delivered, x(i), y(p.Rate), palette[0], label(p.Start), p.Complaints, p.Delivered, pctLabel(p.Rate, 0.0001))
	}
	flush()
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="12" height="12" fill="%s"/><text x="%d" y="%d" font-size="12">complaint rate</text>`, marginL, chartH+6, palette[0], marginL+18, chartH+16)
	b.WriteString(`</svg>`)
	return b.String()
}
