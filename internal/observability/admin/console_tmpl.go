package admin

import (
	"fmt"
	"html/template"
	"strings"
	"time"

	"github.com/aupguard/aupguard/internal/checks/optout"
	"github.com/aupguard/aupguard/internal/observability/report"

	"go.yaml.in/yaml/v3"
)

func yamlText(v any) string {
	b, err := yaml.Marshal(v)
	if err != nil {
		return ""
	}
	return string(b)
}

var consoleFuncs = template.FuncMap{
	"when": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
	"whenp": func(t *time.Time) string {
		if t == nil {
			return "-"
		}
		return t.UTC().Format("2006-01-02 15:04:05 UTC")
	},
	"i64p": func(p *int64) string {
		if p == nil {
			return "-"
		}
		return fmt.Sprint(*p)
	},
	"pct":  func(f float64) string { return fmt.Sprintf("%.3f%%", f*100) },
	"join": strings.Join,
	// sourceOrder and sourceLabels are the opt-out sources, in the
	// reports' order, and their names.
	"sourceOrder":  func() []string { return optout.SourceOrder },
	"sourceLabels": func() []string { return report.SourceNames },
	"attrs": func(m map[string]string) string {
		var parts []string
		for k, v := range m {
			parts = append(parts, k+"="+v)
		}
		return strings.Join(parts, " ")
	},
	"cust": func(id string) string {
		if id == "" {
			return "-"
		}
		return id
	},
}

var console = template.Must(template.New("console").Funcs(consoleFuncs).Parse(`
{{define "style"}}<style>
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222; margin: 24px auto; max-width: 1040px; padding: 0 16px; }
h1 { font-size: 22px; margin: 0 0 8px; } h2 { font-size: 17px; margin: 24px 0 8px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
nav.console { display: flex; gap: 14px; align-items: center; flex-wrap: wrap; padding: 8px 0; border-bottom: 1px solid #ddd; margin-bottom: 16px; }
nav.console a.current { font-weight: bold; color: #222; text-decoration: none; }
nav.console form { margin-left: auto; }
table { border-collapse: collapse; width: 100%; margin: 6px 0 12px; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid #eee; vertical-align: top; font-variant-numeric: tabular-nums; }
th { background: #f5f5f5; } td.n, th.n { text-align: right; }
pre { background: #f7f7f7; padding: 8px; overflow-x: auto; }
.muted { color: #777; } .bad { color: #b33c00; font-weight: 600; } .warn { color: #a36b00; font-weight: 600; } .ok { color: #2a7a2a; }
.attention { border: 1px solid #e0b0a0; background: #fff6f2; padding: 8px 12px; border-radius: 6px; margin-bottom: 12px; }
svg.chart { width: 100%; height: auto; display: block; }
form.filters { display: flex; gap: 8px; flex-wrap: wrap; align-items: end; } form.filters label { display: flex; flex-direction: column; font-size: 12px; color: #555; }
</style>{{end}}

{{define "nav"}}<nav class="console">
<a href="/"{{if eq .Nav "dashboard"}} class="current"{{end}}>Dashboard</a>
<a href="/decisions"{{if eq .Nav "decisions"}} class="current"{{end}}>Decisions</a>
<a href="/customers"{{if or (eq .Nav "customers") (eq .Nav "customer")}} class="current"{{end}}>Customers</a>
<a href="/resellers"{{if or (eq .Nav "resellers") (eq .Nav "reseller")}} class="current"{{end}}>Resellers</a>
{{if .StandingNav}}<a href="/standing"{{if eq .Nav "standing"}} class="current"{{end}}>Stopped</a>{{end}}
{{- if .Admin}}
<a href="/audit"{{if eq .Nav "audit"}} class="current"{{end}}>Audit</a>
{{- end}}
{{- with .Scope}}
<span class="muted" id="scope">signed in as {{$.Who}} ({{.}})</span>
{{- end}}
<form method="get" action="/decision"><label>Reference <input name="ref" size="12" placeholder="e.g. 7KQ2M9XW4P" value="{{.Ref}}"></label> <button>Find</button></form>
</nav>{{end}}

{{define "head"}}<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>{{.}} · aupguard</title>
{{template "style"}}</head><body>{{end}}

{{define "front"}}{{template "style"}}{{template "nav" .}}
{{- if .Attention}}
<section class="attention" id="attention"><strong>Customers needing attention</strong>
<table><thead><tr><th>Customer</th><th>Flag</th><th class="n">Complaint rate</th><th>Level</th></tr></thead><tbody>
{{- range .Attention}}
<tr data-customer="{{.Customer}}"><td><a href="/customers/{{.Customer}}">{{.Customer}}</a></td><td>{{if .Flag}}<span class="bad">flagged</span> {{.Flag.Reason}} since {{when .Flag.Since}}{{else}}-{{end}}</td><td class="n">{{pct .ComplaintRate}}</td><td>{{.RateLevel}}</td></tr>
{{- end}}
</tbody></table></section>
{{- end}}{{end}}

{{define "decision"}}{{template "head" "Decision"}}{{template "nav" .}}
<h1>Find a decision by its reference</h1>
<p class="muted">Every refusal the gateway gives ends with <code>(ref XXXXXXXXXX)</code>; the customer quotes it, this page answers "why was my mail refused?".</p>
{{- if .Ref}}
{{- if .Events}}
{{- range .Events}}
<section class="event" data-ref="{{.Ref}}" data-stage="{{.Stage}}">
<h2>{{.Ref}} · {{.Stage}} · {{.Effective}}</h2>
<table>
<tr><th>Time</th><td>{{when .Time}}</td></tr>
<tr><th>Customer</th><td id="customer">{{if .Customer}}<a href="/customers/{{.Customer}}">{{.Customer}}</a> <span class="muted">(by {{.By}})</span>{{else}}not identified{{end}}</td></tr>
<tr><th>Login</th><td id="login">{{if .Login}}<a href="/decisions?login={{.Login}}">{{.Login}}</a>{{else}}-{{end}}</td></tr>
<tr><th>Client</th><td>{{.Client}}</td></tr>
<tr><th>Queue id</th><td id="queue-id">{{if .QueueID}}{{.QueueID}}{{else}}-{{end}}</td></tr>
<tr><th>Sender domain</th><td>{{.SenderDomain}}</td></tr>
<tr><th>Recipients, size</th><td>{{.Rcpts}}, {{.Size}} bytes</td></tr>
<tr><th>Decision</th><td id="decision">{{.Action}}{{if ne .Action .Effective}} (done: {{.Effective}}, mode {{.Mode}}){{end}}</td></tr>
<tr><th>Check, finding</th><td id="finding">{{.Check}} {{.Finding}}</td></tr>
<tr><th>Reply</th><td id="reply">{{if .Code}}{{.Code}} {{.Enhanced}}{{else}}-{{end}}</td></tr>
<tr><th>Detail</th><td>{{.Detail}}</td></tr>
</table>
{{- if .Findings}}
<table class="findings"><thead><tr><th>Check</th><th>Finding</th><th>Action</th><th>Details</th></tr></thead><tbody>
{{- range .Findings}}<tr><td>{{.Check}}</td><td>{{.Name}}</td><td>{{.Action}}</td><td>{{attrs .Attrs}}</td></tr>{{end}}
</tbody></table>
{{- end}}
</section>
{{- end}}
{{- else}}
<p class="bad" id="not-found">No decision with reference {{.Ref}} in the record (it keeps events for the configured retention).</p>
{{- end}}
{{- end}}
</body></html>{{end}}

{{define "decisions"}}{{template "head" "Decisions"}}{{template "nav" .}}
<h1>Recent decisions</h1>
<form class="filters" method="get" action="/decisions">
<label>Customer <input name="customer" value="{{.F.Customer}}" size="12"></label>
<label>Login <input name="login" value="{{.F.Login}}" size="14"></label>
<label>Check <input name="check" value="{{.F.Check}}" size="14"></label>
<label>Finding <input name="finding" value="{{.F.Finding}}" size="18"></label>
<label>Action <select name="action">{{$a := .F.Action}}
<option value=""{{if eq $a ""}} selected{{end}}>any</option>
<option{{if eq $a "accept"}} selected{{end}}>accept</option><option{{if eq $a "defer"}} selected{{end}}>defer</option>
<option{{if eq $a "reject"}} selected{{end}}>reject</option><option{{if eq $a "quarantine"}} selected{{end}}>quarantine</option></select></label>
<label>Period <select name="since">{{$s := .Since}}
<option{{if eq $s "1h"}} selected{{end}}>1h</option><option{{if eq $s "6h"}} selected{{end}}>6h</option><option{{if eq $s "24h"}} selected{{end}}>24h</option><option{{if eq $s "7d"}} selected{{end}}>7d</option><option{{if eq $s "30d"}} selected{{end}}>30d</option></select></label>
<button>Filter</button></form>
<p id="count">{{if .Total}}{{.From}}–{{.To}} of {{.Total}} decisions{{else}}No decision matches.{{end}}{{if .Capped}} <span class="muted">(the newest 10,000 of the period searched)</span>{{end}}</p>
<table id="decisions"><thead><tr><th>Time</th><th>Ref</th><th>Customer</th><th>Login</th><th>Stage</th><th>Action</th><th>Check</th><th>Finding</th><th>Reply</th><th>Queue id</th></tr></thead><tbody>
{{- range .Events}}
<tr data-ref="{{.Ref}}"><td>{{when .Time}}</td><td><a href="/decision?ref={{.Ref}}">{{.Ref}}</a></td><td>{{if .Customer}}<a href="/customers/{{.Customer}}">{{.Customer}}</a>{{else}}-{{end}}</td><td class="login">{{if .Login}}{{.Login}}{{else}}-{{end}}</td><td>{{.Stage}}</td><td>{{.Effective}}{{if ne .Action .Effective}} <span class="muted">(would {{.Action}})</span>{{end}}</td><td>{{.Check}}</td><td>{{.Finding}}</td><td>{{if .Code}}{{.Code}} {{.Enhanced}}{{end}}</td><td>{{.QueueID}}</td></tr>
{{- end}}
</tbody></table>
<p>{{if .Prev}}<a id="prev" href="{{.Prev}}">← newer</a>{{end}} page {{.Page}} {{if .Next}}<a id="next" href="{{.Next}}">older →</a>{{end}}</p>
</body></html>{{end}}

{{define "audit"}}{{template "head" "Audit"}}{{template "nav" .}}
<h1>Audit trail</h1>
<p class="muted">Every change made through the API, the console and the CLI: who, when, what and from where.</p>
<form class="filters" method="get" action="/audit">
<label>Who <input name="who" value="{{.Who}}" size="16"></label>
<label>Since <input name="since" value="{{.Since}}" size="6" placeholder="7d"></label>
<button>Filter</button></form>
<table id="audit"><thead><tr><th>Time</th><th>Who</th><th>From</th><th>Action</th><th>Target</th><th>Before</th><th>After</th></tr></thead><tbody>
{{- range .Entries}}
<tr><td>{{when .Time}}</td><td>{{.Who}}</td><td>{{.From}}</td><td>{{.Action}}</td><td>{{.Target}}</td><td>{{.Before}}</td><td>{{.After}}</td></tr>
{{- else}}
<tr><td colspan="7" class="muted" id="no-entries">No change recorded.</td></tr>
{{- end}}
</tbody></table>
</body></html>{{end}}

{{define "customers"}}{{template "head" "Customers"}}{{template "nav" .}}
<h1>Customers</h1>
<form method="get" action="/customers"><input name="q" value="{{.Q}}" placeholder="id or name"> <button>Search</button></form>
<p>{{.Total}} customers{{if .Rows}}, {{.From}} to {{.To}} shown{{end}}.{{if .Next}} <a id="next-page" href="{{.Next}}">Next page</a>{{end}}</p>
<table id="customers"><thead><tr><th>Customer</th><th>Name</th><th>Mode</th><th>Defined in</th></tr></thead><tbody>
{{- range .Rows}}
<tr data-customer="{{.ID}}"><td><a href="/customers/{{.ID}}">{{.ID}}</a></td><td>{{.Name}}</td><td>{{.Mode}}</td><td>{{.Source}}{{if .Shadows}} (over the config file){{end}}</td></tr>
{{- end}}
</tbody></table>
</body></html>{{end}}

{{define "resellers"}}{{template "head" "Resellers"}}{{template "nav" .}}
<h1>Resellers</h1>
<table id="resellers"><thead><tr><th>Reseller</th><th>Name</th><th class="n">Customers</th><th>Abuse contacts</th></tr></thead><tbody>
{{- range .Rows}}
<tr data-reseller="{{.ID}}"><td><a href="/resellers/{{.ID}}">{{.ID}}</a></td><td>{{.Name}}</td><td class="n">{{.Customers}}</td><td>{{range $i, $c := .Contacts}}{{if $i}}, {{end}}{{$c}}{{end}}</td></tr>
{{- else}}
<tr><td colspan="4">No reseller in the config (resellers:).</td></tr>
{{- end}}
</tbody></table>
</body></html>{{end}}

{{define "reseller"}}{{template "head" .ID}}{{template "nav" .}}
{{- if not .Known}}
<h1>No reseller {{.ID}}</h1><p><a href="/resellers">All resellers</a></p>
{{- else}}
<h1>Reseller {{.ID}}{{with .Name}} <span class="muted">{{.}}</span>{{end}}</h1>
{{- range .Errors}}<p class="warn">{{.}}</p>{{end}}
<p id="contacts">Abuse contacts: {{range $i, $c := .Contacts}}{{if $i}}, {{end}}{{$c}}{{else}}none (notifications and reports go to the provider only){{end}}</p>
<h2>Reseller-wide limits and current use</h2>
{{- with .Limits}}
<table id="reseller-quota"><thead><tr><th>Limit</th><th>Kind</th><th class="n">Limit</th><th class="n">Used</th><th class="n">Remaining</th><th>Next free</th><th>All free</th></tr></thead><tbody>
{{- range .}}{{if not .Unlimited}}
<tr data-limit="{{.Name}}"><td>{{.Name}}</td><td>{{.Kind}}{{if .Period}} / {{.Period}}{{end}}</td><td class="n">{{.Limit}} {{.Unit}}</td><td class="n">{{i64p .Used}}</td><td class="n">{{i64p .Remaining}}</td><td>{{whenp .NextFreeAt}}</td><td>{{whenp .FreeAt}}</td></tr>
{{- end}}{{end}}
</tbody></table>
{{- else}}
<p>No reseller-wide limits.</p>
{{- end}}
<h2>Customers</h2>
<p id="customer-count">{{.Total}} customers{{if gt .Total (len .Rows)}}, the first {{len .Rows}} shown{{end}}.</p>
<table id="reseller-customers"><thead><tr><th>Customer</th><th>Name</th><th>Mode</th><th>Standing</th><th class="n">Complaint rate</th><th class="n">Messages (24h)</th><th class="n">Stopped (24h)</th></tr></thead><tbody>
{{- range .Rows}}
<tr data-customer="{{.ID}}"><td><a href="/customers/{{.ID}}">{{.ID}}</a></td><td>{{.Name}}</td><td>{{.Mode}}</td><td>{{if .Flag}}<span class="bad">flagged</span> {{.Flag}}{{else if .RateLevel}}{{.RateLevel}}{{else}}-{{end}}</td><td class="n">{{pct .ComplaintRate}}</td><td class="n">{{with .Last24h}}{{.Messages}}{{else}}-{{end}}</td><td class="n">{{with .Last24h}}{{.Stopped}}{{else}}-{{end}}</td></tr>
{{- end}}
</tbody></table>
{{- end}}
</body></html>{{end}}

{{define "customer"}}{{template "head" .ID}}{{template "nav" .}}
{{- if not .Known}}
<h1>No customer {{.ID}}</h1><p><a href="/customers">All customers</a></p>
{{- else}}
<h1>{{.ID}}{{with .Name}} <span class="muted">{{.}}</span>{{end}}</h1>
{{- range .Errors}}<p class="warn">{{.}}</p>{{end}}
{{- if .Cleared}}<p class="ok" id="cleared">Flag cleared.</p>{{end}}

<h2>Opt-out standing</h2>
{{- with .Standing}}
<table id="standing">
<tr><th>Flag</th><td id="flag">{{if .Flag}}<span class="bad">flagged</span>: {{.Flag.Reason}} since {{when .Flag.Since}} ({{.Flag.Hits}} sends to opted-out recipients)
{{- if $.CSRF}}
<form method="post" action="/customers/{{.Customer}}/clear-flag"><input type="hidden" name="csrf" value="{{$.CSRF}}"><button id="clear-flag">Clear the flag</button></form>{{end}}{{else}}<span class="ok">not flagged</span>{{end}}</td></tr>
<tr><th>Sends to opted-out recipients</th><td>{{.OptedOutSends}} (flag at {{.FlagThreshold}})</td></tr>
<tr><th>Complaint rate</th><td id="complaint-rate">{{pct .ComplaintRate}}: {{.Complaints}} of {{.Delivered}} delivered, <span class="{{if eq .RateLevel "act"}}bad{{else if eq .RateLevel "warn"}}warn{{end}}">{{.RateLevel}}</span> (warn at {{pct $.Thresholds.Warn}}, act at {{pct $.Thresholds.Act}})</td></tr>
<tr><th>Own suppression list</th><td>{{.ListSize}} addresses</td></tr>
<tr><th>Opt-outs recorded, by source</th><td id="optout-sources">{{$src := .Sources}}{{range $i, $k := sourceOrder}}{{if $i}}, {{end}}<span data-source="{{$k}}">{{index sourceLabels $i}}: {{index $src $k}}</span>{{end}} (total {{.OptOutsRecorded}})</td></tr>
</table>
{{- end}}

{{- with .Trend}}
<h2>Complaint rate trend</h2>
{{.}}
{{- end}}

<h2>Limits and current use</h2>
{{- with .Quota}}
<table id="quota"><thead><tr><th>Limit</th><th>Kind</th><th class="n">Limit</th><th class="n">Used</th><th class="n">Remaining</th><th>Next free</th><th>All free</th></tr></thead><tbody>
{{- range .Limits}}
<tr data-limit="{{.Name}}"><td>{{.Name}}</td><td>{{.Kind}}{{if .Period}} / {{.Period}}{{end}}</td><td class="n">{{if .Unlimited}}unlimited{{else}}{{.Limit}} {{.Unit}}{{end}}</td><td class="n">{{i64p .Used}}</td><td class="n">{{i64p .Remaining}}</td><td>{{whenp .NextFreeAt}}</td><td>{{whenp .FreeAt}}</td></tr>
{{- end}}
</tbody></table>
{{- with .Spike}}<p>Spike detection: {{.Count}} messages in the last {{.Window}}, threshold {{printf "%.0f" .Threshold}} ({{printf "%.1f" .Factor}} × baseline {{printf "%.1f" .Baseline}}/h, floor {{.Floor}}){{if .Spiking}} — <span class="bad">spiking</span>{{end}}.</p>{{end}}
{{- else}}<p class="muted">No limit information.</p>{{end}}

{{- range .Panels}}
<section id="panel-{{.Name}}">
<h2>{{.Title}}</h2>
{{.HTML}}
</section>
{{- end}}

<h2>Volume, last 7 days</h2>
{{.Volume}}
<h2>Decisions by check</h2>
{{.Checks}}
{{- if .CheckRows}}
<table id="checks"><thead><tr><th>Check</th><th>Finding</th><th class="n">Reject</th><th class="n">Defer</th><th class="n">Hold</th><th class="n">Accept</th><th class="n">Monitor</th></tr></thead><tbody>
{{- range .CheckRows}}<tr><td><a href="/decisions?customer={{$.ID}}&amp;check={{.Check}}&amp;since=7d">{{.Check}}</a></td><td>{{.Finding}}</td><td class="n">{{.Reject}}</td><td class="n">{{.Defer}}</td><td class="n">{{.Quarantine}}</td><td class="n">{{.Accept}}</td><td class="n">{{.Monitor}}</td></tr>{{end}}
</tbody></table>
{{- end}}
<p><a href="/decisions?customer={{.ID}}&amp;since=7d">This customer's decisions</a></p>

<h2>Definition</h2>
<p>From the {{.Source}}{{if .Shadows}} (replaces the config file's definition){{end}}.</p>
<pre id="definition">{{.Definition}}</pre>

<h2>Change history</h2>
{{- if .Changes}}
<table id="changes"><thead><tr><th>Time</th><th class="n">Version</th><th>Change</th><th>Through</th><th>Fields</th></tr></thead><tbody>
{{- range .Changes}}<tr><td>{{when .Time}}</td><td class="n">{{.Version}}</td><td>{{.Op}}</td><td>{{.Via}}</td><td>{{join .Fields ", "}}</td></tr>{{end}}
</tbody></table>
{{- else}}<p class="muted" id="no-changes">No change recorded (defined in the config file, never changed live).</p>{{end}}
{{- end}}
</body></html>{{end}}
`))
