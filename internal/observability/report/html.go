package report

import (
	"html/template"
	"io"
	"strconv"
	"time"
)

// HTMLOptions tune the HTML rendering.
type HTMLOptions struct {
	// Dashboard renders the admin dashboard: a range menu and, when
	// Refresh is set, a meta refresh (no JavaScript either way).
	Dashboard bool
	Refresh   time.Duration
	// Ranges are the dashboard's range links, e.g. {"24h": "?since=24h"}
	// in order.
	Ranges []Link
	// Header is HTML put at the top of the page's body (the admin
	// console's navigation and its list of customers needing attention).
	Header template.HTML
	// CustomerHref, when set, links each customer row to CustomerHref+ID.
	CustomerHref string
}

// Link is a navigation link.
type Link struct {
	Label, Href string
	Current     bool
}

// WriteHTML renders r as one self-contained HTML page: inline CSS and SVG,
// no script, no external resource; printable.
func (r *Report) WriteHTML(w io.Writer, o HTMLOptions) error {
	return page.Execute(w, struct {
		R       *Report
		O       HTMLOptions
		Refresh int
		Volume  template.HTML
		Checks  template.HTML
		// Sections are the families' sections, rendered by each.
		Sections []renderedSection
	}{r, o, int(o.Refresh / time.Second), template.HTML(r.VolumeChart()), template.HTML(r.ChecksChart()), r.renderedSections()})
}

// renderedSection is a family's report section as HTML.
type renderedSection struct {
	Name, Title string
	HTML        template.HTML
}

// renderedSections renders the families' sections that have HTML, in
// order (the family escapes what it renders).
func (r *Report) renderedSections() []renderedSection {
	var out []renderedSection
	for _, s := range r.sections {
		if s.HTML == nil {
			continue
		}
		out = append(out, renderedSection{Name: s.Name, Title: s.Title, HTML: s.HTML(r.Sections[s.Name])})
	}
	return out
}

var funcs = template.FuncMap{
	"label": customerLabel,
	"bytes": humanBytes,
	"pct":   pct,
	"top":   topFinding,
	"when":  func(t time.Time) string { return t.Format("2006-01-02 15:04") },
	"rfc":   func(t time.Time) string { return t.Format(time.RFC1123) },
	"rate": func(o OptOutRow) []string {
		return standingCells(o)
	},
	"i64":         func(n int64) string { return strconv.FormatInt(n, 10) },
	"bounce":      bounceCells,
	"listing":     listingCells,
	"i64add":      func(a, b int64) int64 { return a + b },
	"sourceNames": func() []string { return SourceNames },
}

var page = template.Must(template.New("report").Funcs(funcs).Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
{{- if and .O.Dashboard .Refresh}}
<meta http-equiv="refresh" content="{{.Refresh}}">
{{- end}}
<title>{{.R.Title}}</title>
<style>
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222; margin: 24px auto; max-width: 1040px; padding: 0 16px; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 28px 0 8px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
.period { color: #555; margin: 0 0 16px; }
nav a { margin-right: 12px; } nav a.current { font-weight: bold; text-decoration: none; color: #222; }
.figures { display: flex; flex-wrap: wrap; gap: 12px; margin: 16px 0; }
.figure { border: 1px solid #ddd; border-radius: 6px; padding: 8px 14px; min-width: 110px; }
.figure .n { font-size: 24px; font-weight: 600; display: block; }
.figure .l { color: #555; font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
.figure.reject .n { color: #b33c00; } .figure.defer .n { color: #1f6fa8; } .figure.held .n { color: #a36b00; }
table { border-collapse: collapse; width: 100%; margin: 6px 0 12px; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid #eee; font-variant-numeric: tabular-nums; }
th { background: #f5f5f5; font-weight: 600; }
td.n, th.n { text-align: right; }
svg.chart { width: 100%; height: auto; display: block; margin: 8px 0 4px; }
.note { color: #8a5a00; }
.muted { color: #777; }
footer { margin-top: 32px; color: #777; font-size: 12px; }
@media print { nav { display: none; } body { margin: 0; max-width: none; } h2, table, svg { page-break-inside: avoid; } }
</style>
</head>
<body>
{{.O.Header}}
<header>
<h1>{{if .O.Dashboard}}aupguard dashboard{{else}}aupguard report{{end}}{{if .R.Customer}}: {{label .R.Customer}}{{end}}</h1>
<p class="period">{{.R.Period}}</p>
{{- if .O.Dashboard}}
<nav>{{range .O.Ranges}}<a href="{{.Href}}"{{if .Current}} class="current"{{end}}>{{.Label}}</a>{{end}}</nav>
{{- end}}
</header>
<section id="figures" class="figures">
<div class="figure" id="fig-messages"><span class="n">{{.R.Totals.Messages}}</span><span class="l">messages</span></div>
<div class="figure" id="fig-accepted"><span class="n">{{.R.Totals.Accepted}}</span><span class="l">accepted</span></div>
<div class="figure held" id="fig-held"><span class="n">{{.R.Totals.Held}}</span><span class="l">held</span></div>
<div class="figure defer" id="fig-deferred"><span class="n">{{.R.Totals.Deferred}}</span><span class="l">deferred</span></div>
<div class="figure reject" id="fig-rejected"><span class="n">{{.R.Totals.Rejected}}</span><span class="l">rejected</span></div>
<div class="figure reject" id="fig-rcpt-refused"><span class="n">{{.R.Totals.RcptRefused}}</span><span class="l">recipients refused</span></div>
<div class="figure" id="fig-recipients"><span class="n">{{.R.Totals.Recipients}}</span><span class="l">recipients ({{bytes .R.Totals.Bytes}})</span></div>
{{- if .R.Totals.WouldRefuse}}
<div class="figure" id="fig-monitor"><span class="n">{{.R.Totals.WouldRefuse}}</span><span class="l">monitor: would stop</span></div>
{{- end}}
</section>

<h2>Volume</h2>
{{.Volume}}
<p class="muted">Messages per {{if ge .R.Span 86400000000000}}day{{else}}hour{{end}}. Red triangles: volume spikes; orange diamonds: limits reached.</p>

<h2>Decisions by check</h2>
{{.Checks}}
{{- if .R.Checks}}
<table id="checks">
<thead><tr><th>Check</th><th>Finding</th><th class="n">Reject</th><th class="n">Defer</th><th class="n">Hold</th><th class="n">Accept</th><th class="n">Monitor</th><th class="n">Seen</th></tr></thead>
<tbody>
{{- range .R.Checks}}
<tr><td>{{.Check}}</td><td>{{.Finding}}</td><td class="n">{{.Reject}}</td><td class="n">{{.Defer}}</td><td class="n">{{.Quarantine}}</td><td class="n">{{.Accept}}</td><td class="n">{{.Monitor}}</td><td class="n">{{.Findings}}</td></tr>
{{- end}}
</tbody>
</table>
{{- end}}

{{- if not .R.Customer}}
<h2>Top offenders</h2>
{{- if .R.TopOffenders}}
<table id="offenders">
<thead><tr><th>Customer</th><th class="n">Stopped</th><th class="n">Share</th><th class="n">Monitor</th><th>Main reason</th></tr></thead>
<tbody>
{{- range .R.TopOffenders}}
<tr data-customer="{{.ID}}"><td>{{label .ID}}</td><td class="n">{{.Stopped}}</td><td class="n">{{pct .Stopped (i64add .Messages .RcptRefused)}}</td><td class="n">{{.WouldRefuse}}</td><td>{{top .}}</td></tr>
{{- end}}
</tbody>
</table>
{{- else}}
<p class="muted">Nothing stopped in this period.</p>
{{- end}}

<h2>By customer</h2>
<table id="customers">
<thead><tr><th>Customer</th><th>Mode</th><th class="n">Messages</th><th class="n">Recipients</th><th class="n">Accepted</th><th class="n">Held</th><th class="n">Deferred</th><th class="n">Rejected</th><th class="n">Rcpt refused</th><th class="n">Monitor</th><th class="n">Spikes</th><th class="n">Limit hits</th></tr></thead>
<tbody>
{{- range .R.Customers}}
<tr data-customer="{{.ID}}"><td>{{if $.O.CustomerHref}}<a href="{{$.O.CustomerHref}}{{.ID}}">{{label .ID}}</a>{{else}}{{label .ID}}{{end}}{{if .Name}} <span class="muted">{{.Name}}</span>{{end}}</td><td>{{.Mode}}</td><td class="n">{{.Messages}}</td><td class="n">{{.Recipients}}</td><td class="n">{{.Accepted}}</td><td class="n">{{.Held}}</td><td class="n">{{.Deferred}}</td><td class="n">{{.Rejected}}</td><td class="n">{{.RcptRefused}}</td><td class="n">{{.WouldRefuse}}</td><td class="n">{{.Spikes}}</td><td class="n">{{.LimitHits}}</td></tr>
{{- else}}
<tr><td colspan="12" class="muted">No mail in this period.</td></tr>
{{- end}}
</tbody>
</table>
{{- end}}

{{- if or .R.Spikes .R.LimitHits}}
<h2>Spikes and limits reached</h2>
<table id="marks">
<thead><tr><th>Time (UTC)</th><th>Customer</th><th>Finding</th><th class="n">Count</th></tr></thead>
<tbody>
{{- range .R.Spikes}}<tr class="spike"><td>{{when .Time}}</td><td>{{label .Customer}}</td><td>{{.Kind}}</td><td class="n">{{.Count}}</td></tr>{{end}}
{{- range .R.LimitHits}}<tr class="limit"><td>{{when .Time}}</td><td>{{label .Customer}}</td><td>{{.Kind}}</td><td class="n">{{.Count}}</td></tr>{{end}}
</tbody>
</table>
{{- end}}

{{- if .R.OptOut}}
<h2>Opt-outs and complaints</h2>
<table id="optout">
<thead><tr><th>Customer</th><th class="n">To opted-out</th><th class="n">To suppressed</th><th class="n">Escalations</th><th>Flag</th><th class="n">Complaints / delivered</th><th>Complaint rate</th></tr></thead>
<tbody>
{{- range .R.OptOut}}{{$s := rate .}}
<tr data-customer="{{.Customer}}"><td>{{label .Customer}}</td><td class="n">{{.OptedOut}}</td><td class="n">{{.Suppressed}}</td><td class="n">{{.Escalated}}</td><td>{{index $s 0}}</td><td class="n">{{index $s 1}}</td><td>{{index $s 2}}</td></tr>
{{- end}}
</tbody>
</table>
{{- end}}

{{- if .R.OptOutSources}}
<h2>Opt-outs recorded by source</h2>
<table id="optout-sources">
<thead><tr><th>Customer</th>{{range sourceNames}}<th class="n">{{.}}</th>{{end}}<th class="n">Total</th></tr></thead>
<tbody>
{{- range .R.OptOutSources}}
<tr data-customer="{{.Customer}}"><td>{{label .Customer}}</td>{{range .Counts}}<td class="n">{{.}}</td>{{end}}<td class="n">{{.Total}}</td></tr>
{{- end}}
</tbody>
</table>
{{- end}}

{{- if .R.DMARC}}
<h2>DMARC failures by domain</h2>
<table id="dmarc">
<thead><tr><th>Domain</th><th>Customer</th><th>Finding</th><th class="n">Count</th></tr></thead>
<tbody>
{{- range .R.DMARC}}<tr><td>{{.Domain}}</td><td>{{label .Customer}}</td><td>{{.Finding}}</td><td class="n">{{.Count}}</td></tr>{{end}}
</tbody>
</table>
{{- end}}

{{- if .R.Bounces}}
<h2>Bounce rates</h2>
<table id="bounces">
<thead><tr><th>Customer</th><th class="n">Sent</th><th class="n">Hard bounces</th><th class="n">Policy</th><th class="n">Other</th><th class="n">Deferred</th><th class="n">Hard rate</th><th>Level</th><th>Outcome over act</th></tr></thead>
<tbody>
{{- range .R.Bounces}}{{$c := bounce .}}
<tr data-customer="{{.Customer}}" class="level-{{.Level}}">{{range $i, $v := $c}}<td{{if and (ge $i 1) (le $i 6)}} class="n"{{end}}>{{$v}}</td>{{end}}</tr>
{{- end}}
</tbody>
</table>
{{- end}}

{{- if .R.Blocklists}}
<h2>Blocklists</h2>
<table id="blocklists">
<thead><tr><th>Address</th><th>Zone</th><th>State</th><th>Since (UTC)</th><th>Last check</th><th>Note</th></tr></thead>
<tbody>
{{- range .R.Blocklists}}{{$c := listing .}}
<tr data-address="{{.Address}}" data-zone="{{.Zone}}"{{if .Listed}} class="listed"{{end}}>{{range $c}}<td>{{.}}</td>{{end}}</tr>
{{- end}}
</tbody>
</table>
{{- end}}

{{- range .Sections}}
<section id="section-{{.Name}}">
<h2>{{.Title}}</h2>
{{.HTML}}
</section>
{{- end}}

{{- if not .R.Customer}}{{range .R.Customers}}{{if .Findings}}
<h2>Detail: {{label .ID}}</h2>
<table class="detail" data-customer="{{.ID}}">
<thead><tr><th>Check</th><th>Finding</th><th class="n">Decisions</th></tr></thead>
<tbody>{{range .Findings}}<tr><td>{{.Check}}</td><td>{{.Finding}}</td><td class="n">{{.Count}}</td></tr>{{end}}</tbody>
</table>
{{- end}}{{end}}{{end}}

{{- range .R.Errors}}
<p class="note">Note: {{.}}</p>
{{- end}}
<footer>Generated {{rfc .R.Generated}} by aupguard. All times UTC.</footer>
</body>
</html>
`))
