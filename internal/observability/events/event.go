// Package events is the decision record: every decision the gateway makes
// (refusals at MAIL and RCPT, every message's end-of-message verdict, and
// monitor mode's would-be decisions) becomes an Event, kept in the store for
// a retention period, together with hourly and daily per-customer counters
// from which the reports are computed.
//
// Recording never slows a milter reply: Observe hands the decision to a
// bounded queue and returns; a background writer stores events in batches
// (Redis: one Lua script per day's stream and one per customer-hour, all in
// one pipeline). When the queue is full the event is dropped and counted.
//
// The record serves the AUP's cooperation clause ("Nanosek will cooperate
// with appropriate law enforcement agencies and other parties involved in
// investigating claims of illegal or inappropriate activity"): what happened
// to a message can be found from the reference id in its SMTP reply.
package events

import (
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/aupguard/aupguard/internal/engine/decision"
	"github.com/aupguard/aupguard/internal/engine/policy"
)

// Event is one recorded decision. Recipients appear only as keyed hashes,
// unless log.plain_recipients put the plain addresses in RcptPlain.
type Event struct {
	Time    time.Time `json:"time"`
	Stage   string    `json:"stage"`
	QueueID string    `json:"queue_id,omitempty"`
	// Ref is the reference id quoted in the SMTP reply.
	Ref string `json:"ref"`
	// Customer is "" for a client that is no customer.
	Customer string `json:"customer,omitempty"`
	By       string `json:"by,omitempty"`
	// Login is the SASL or Unix login the message was sent with.
	Login        string   `json:"login,omitempty"`
	Client       string   `json:"client,omitempty"`
	SenderDomain string   `json:"sender_domain,omitempty"`
	Rcpts        int      `json:"rcpts"`
	RcptHashes   []string `json:"rcpt_hashes,omitempty"`
	RcptPlain    []string `json:"rcpt_plain,omitempty"`
	Size         int64    `json:"size,omitempty"`
	// Action is the verdict; Effective what was done (they differ in
	// monitor mode).
	Action    string `json:"action"`
	Effective string `json:"effective"`
	Check     string `json:"check,omitempty"`
	Finding   string `json:"finding,omitempty"`
	// Detail is for the postmaster only; it never goes into customer reports.
	Detail   string `json:"detail,omitempty"`
	Code     int    `json:"code,omitempty"`
	Enhanced string `json:"enhanced,omitempty"`
	Mode     string `json:"mode"`
	// Findings are every non-ignored finding of the stage.
	Findings   []Finding `json:"findings,omitempty"`
	DurationMS float64   `json:"ms"`
}

// Finding is one check's finding within an Event.
type Finding struct {
	Check  string            `json:"check"`
	Name   string            `json:"name"`
	Action string            `json:"action"`
	Attrs  map[string]string `json:"attrs,omitempty"`
}

// FromDecision converts a gateway decision into an Event.
func FromDecision(d *decision.Decision) Event {
	e := Event{
		Time: d.Time.UTC(), Stage: d.Stage, QueueID: d.QueueID, Ref: d.Ref, Customer: d.Customer, By: d.By, Login: d.Login,
		Client: d.Client, SenderDomain: d.SenderDomain, Rcpts: d.Rcpts, RcptHashes: d.RcptHashes, RcptPlain: d.RcptPlain,
		Size: d.Size, Action: d.Action.String(), Effective: d.Effective.String(), Check: d.Check, Finding: d.Finding,
		Detail: d.Detail, Code: d.Code, Enhanced: d.Enhanced, Mode: d.Mode,
		DurationMS: float64(d.Duration.Microseconds()) / 1000,
	}
	if len(d.Results) > 0 {
		e.Findings = make([]Finding, len(d.Results))
		for i, r := range d.Results {
			e.Findings[i] = Finding{Check: r.Check, Name: r.Finding.Name, Action: r.Action.String(), Attrs: r.Finding.Attrs}
		}
	}
	return e
}

// Unidentified is the customer name the counters use for clients that are
// no customer.
const Unidentified = "-"

// CustomerOf returns the customer name of e in the counters.
func (e *Event) CustomerOf() string {
	if e.Customer == "" {
		return Unidentified
	}
	return e.Customer
}

// Counter field names. A counter hash holds, per customer and hour (and per
// customer and day):
//
//	msg                                       messages decided
//	rcpt, bytes                               their accepted recipients and size (at end of message)
//	a|ACTION                                  messages by action taken (accept, quarantine, defer, reject)
//	w|ACTION                                  messages whose verdict was ACTION in monitor mode (accepted)
//	d|STAGE|CHECK|FINDING|ACTION|EFFECTIVE    decisions by deciding check, finding, verdict and action taken
//	r|CHECK|FINDING|ACTION                    every non-ignored finding, deciding or not
//	dm|DOMAIN|FINDING                         findings of the dmarc check, by author domain
const (
	FieldMessages   = "msg"
	FieldRcpts      = "rcpt"
	FieldBytes      = "bytes"
	PrefixAction    = "a|"
	PrefixWouldBe   = "w|"
	PrefixDecision  = "d|"
	PrefixResult    = "r|"
	PrefixDMARC     = "dm|"
	dmarcCheckName  = "dmarc"
	fieldSeparator  = "|"
	actionAccept    = "accept"
	stageMailString = decision.StageMail
)

// IsMessage reports whether e is a message's final decision: every
// end-of-message decision, and a refusal at MAIL FROM (the transaction
// ends there; at RCPT only one recipient is refused). A client that is no
// customer and is let through has its only decision at MAIL.
func (e *Event) IsMessage() bool {
	switch e.Stage {
	case decision.StageEOM:
		return true
	case stageMailString:
		return e.Effective == policy.Defer.String() || e.Effective == policy.Reject.String() || e.Customer == ""
	}
	return false
}

// Counters returns the counter increments of e, sorted by field name.
func (e *Event) Counters() []Counter {
	m := map[string]int64{}
	if e.IsMessage() {
		m[FieldMessages]++
		if e.Stage == decision.StageEOM {
			m[FieldRcpts] += int64(e.Rcpts)
			m[FieldBytes] += e.Size
		}
		m[PrefixAction+e.Effective]++
		if e.Action != e.Effective {
			m[PrefixWouldBe+e.Action]++
		}
	}
	if e.Check != "" {
		m[PrefixDecision+strings.Join([]string{e.Stage, e.Check, e.Finding, e.Action, e.Effective}, fieldSeparator)]++
	}
	for _, f := range e.Findings {
		m[PrefixResult+f.Check+fieldSeparator+f.Name+fieldSeparator+f.Action]++
		if f.Check == dmarcCheckName {
			dom := f.Attrs["domain"]
			if dom == "" {
				dom = e.SenderDomain
			}
			if dom == "" {
				dom = Unidentified
			}
			m[PrefixDMARC+strings.ToLower(dom)+fieldSeparator+f.Name]++
		}
	}
	out := make([]Counter, 0, len(m))
	for k, n := range m {
		out = append(out, Counter{Field: k, N: n})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Field < out[j].Field })
	return out
}

// Counter is one counter increment.
type Counter struct {
	Field string
	N     int64
}

// Bucket is the counters of one customer over one hour or one day.
type Bucket struct {
	Customer string           `json:"customer"`
	Start    time.Time        `json:"start"`
	Span     time.Duration    `json:"span"`
	Counts   map[string]int64 `json:"counts"`
}

// Query selects events. The zero Query is the newest events of every
// customer within the retention period.
type Query struct {
	// Ref selects the events of one reference id.
	Ref string
	// Customer selects one customer (Unidentified for clients that are no
	// customer); "" is every customer.
	Customer string
	// Login selects the events of one login (exactly); "" is every login.
	Login string
	// Since and Until bound the event time (zero: unbounded).
	Since, Until time.Time
	// Limit caps the number of events (newest first); 0 means 1000.
	Limit int
}

// DefaultLimit is a Query's default Limit.
const DefaultLimit = 1000

func (q Query) limit() int {
	if q.Limit <= 0 {
		return DefaultLimit
	}
	return q.Limit
}

// match reports whether e is selected by q (time bounds included).
func (q Query) match(e *Event) bool {
	if q.Ref != "" && !strings.EqualFold(e.Ref, q.Ref) {
		return false
	}
	if q.Customer != "" && e.CustomerOf() != q.Customer {
		return false
	}
	if q.Login != "" && e.Login != q.Login {
		return false
	}
	if !q.Since.IsZero() && e.Time.Before(q.Since) {
		return false
	}
	if !q.Until.IsZero() && !e.Time.Before(q.Until) {
		return false
	}
	return true
}

// AggQuery selects counters.
type AggQuery struct {
	// Since and Until bound the period; buckets that start in it count.
	Since, Until time.Time
	// Customer selects one customer; "" is every customer.
	Customer string
	// Daily asks for day buckets (UTC days) instead of hours.
	Daily bool
}

// span returns the bucket length of q.
func (q AggQuery) span() time.Duration {
	if q.Daily {
		return 24 * time.Hour
	}
	return time.Hour
}

// starts returns the bucket start times overlapping [Since, Until).
func (q AggQuery) starts() []time.Time {
	sp := q.span()
	var out []time.Time
	for t := q.Since.UTC().Truncate(sp); t.Before(q.Until); t = t.Add(sp) {
		out = append(out, t)
	}
	return out
}

// hourKey and dayKey name a bucket in Redis keys.
func hourKey(t time.Time) string { return t.UTC().Format("2006010215") }
func dayKey(t time.Time) string  { return t.UTC().Format("20060102") }

// ParseField splits a counter field into its prefix and parts
// ("d|rcpt|optout_suppression|recipient_opted_out|reject|reject" gives
// "d|" and the five parts).
func ParseField(f string) (prefix string, parts []string) {
	i := strings.IndexByte(f, '|')
	if i < 0 {
		return f, nil
	}
	return f[:i+1], strings.Split(f[i+1:], fieldSeparator)
}

// formatInt is strconv.FormatInt for counters.
func formatInt(n int64) string { return strconv.FormatInt(n, 10) }
