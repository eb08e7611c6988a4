// Package notify mails the postmaster when a customer needs a human: a
// decision carries a finding a family declared as a notice (opt-out's:
// flagged for sending to recipients who opted out, complaint rate over
// the act threshold). One mail per customer and kind per
// notifications.interval, shared by every gateway of a Redis store.
package notify

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/gateway"
	"github.com/aupguard/aupguard/internal/observability/report"
	"github.com/aupguard/aupguard/internal/store"
)

// Sender sends mail (*report.Mailer).
type Sender interface {
	Send(ctx context.Context, msgs []report.Message, now time.Time) (int, error)
}

// Notifier is a gateway.Observer: it never blocks a decision; the mail
// goes out from its own goroutine.
type Notifier struct {
	cfgFn func() *config.Config
	send  Sender
	h     *store.Handle
	clock clock.Clock
	log   *slog.Logger
	// kinds are the findings that notify, with what each says.
	kinds map[string]string

	mu   sync.Mutex
	last map[string]time.Time
	ch   chan job
	done chan struct{}
}

type job struct {
	customer, kind, detail string
	at                     time.Time
}

// New starts a notifier on the running config (cfg is called for each
// notification, so that reloads and live customers count) for the
// findings of kinds, each with what it says of the customer ("was
// flagged: it keeps sending to recipients who opted out"; the families
// declare them: setup.Host.Notice); Close stops it.
func New(cfg func() *config.Config, send Sender, h *store.Handle, clk clock.Clock, log *slog.Logger, kinds map[string]string) *Notifier {
	if clk == nil {
		clk = clock.System{}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	n := &Notifier{cfgFn: cfg, kinds: kinds, send: send, h: h, clock: clk, log: log, last: map[string]time.Time{}, ch: make(chan job, 64), done: make(chan struct{})}
	go n.run()
	return n
}

// Observe implements gateway.Observer.
func (n *Notifier) Observe(d *gateway.Decision) {
	if d.Customer == "" {
		return
	}
	for _, r := range d.Results {
		if _, ok := n.kinds[r.Finding.Name]; !ok {
			continue
		}
		key := d.Customer + "\x00" + r.Finding.Name
		now := n.clock.Now()
		n.mu.Lock()
		recent := now.Sub(n.last[key]) < n.cfgFn().Notifications.Interval
		if !recent {
			n.last[key] = now
		}
		n.mu.Unlock()
		if recent {
			continue
		}
		select {
		case n.ch <- job{d.Customer, r.Finding.Name, r.Finding.Detail, now}:
		default:
			n.log.Warn("notification dropped: queue full", "customer", d.Customer, "kind", r.Finding.Name)
		}
	}
}

// Close stops the notifier after the queued mail is sent.
func (n *Notifier) Close() error {
	close(n.ch)
	<-n.done
	return nil
}

func (n *Notifier) run() {
	defer close(n.done)
	for j := range n.ch {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		n.deliver(ctx, j)
		cancel()
	}
}

// claim takes the shared right to notify (SET NX with the interval): of
// several gateways seeing the same event, one mails.
func (n *Notifier) claim(ctx context.Context, j job) bool {
	if n.h == nil || n.h.Client == nil {
		return true
	}
	ok, err := n.h.Client.SetNX(ctx, n.h.CustomerKey(j.customer, "notified", j.kind), j.at.Unix(), n.cfgFn().Notifications.Interval).Result()
	if err != nil {
		n.log.Warn("notification: store unavailable, mailing anyway", "err", err)
		return true
	}
	return ok
}

func (n *Notifier) deliver(ctx context.Context, j job) {
	if !n.claim(ctx, j) {
		return
	}
	cfg := n.cfgFn()
	what := n.kinds[j.kind]
	subject := fmt.Sprintf("%s customer %s %s", cfg.Reports.SubjectPrefix, j.customer, strings.SplitN(what, ":", 2)[0])
	var b strings.Builder
	fmt.Fprintf(&b, "Customer %s %s.\n\nWhen: %s\nFinding: %s\nDetail: %s\n\n", j.customer, what, j.at.UTC().Format(time.RFC1123), j.kind, j.detail)
	fmt.Fprintf(&b, "Its page in the console: /customers/%s\nClear the flag: aupguard customer clear %s\n", j.customer, j.customer)
	fmt.Fprintf(&b, "\nAt most one such mail per customer every %s.\n", cfg.Notifications.Interval)
	msgs := []report.Message{{To: cfg.Provider.Postmaster, Subject: subject, Text: b.String()}}
	for _, c := range cfg.Customers {
		if c.ID != j.customer {
			continue
		}
		if cfg.Notifications.AbuseContact && c.AbuseContact != "" {
			msgs = append(msgs, report.Message{To: c.AbuseContact, Subject: subject, Text: b.String()})
		}
		msgs = append(msgs, resellerCopies(cfg, c, subject, what, j)...)
		break
	}
	sent, err := n.send.Send(ctx, msgs, n.clock.Now())
	if err != nil {
		n.log.Error("notification not sent", "customer", j.customer, "kind", j.kind, "sent", sent, "err", err)
		return
	}
	n.log.Info("notification sent", "event", "notification", "customer", j.customer, "kind", j.kind, "recipients", sent)
}

// resellerCopies are the notification's copies for the abuse contacts of
// the customer's reseller (resellers[].abuse_contacts): complaints about
// a reseller's customers go to the reseller for resolution, the provider
// keeping its copy. They say which customer, what and when, without the
// provider's console and commands.
func resellerCopies(cfg *config.Config, c config.Customer, subject, what string, j job) []report.Message {
	r := cfg.Reseller(c.Reseller)
	if r == nil || len(r.AbuseContacts) == 0 {
		return nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Your customer %s %s.\n\nReseller: %s\nWhen: %s\nFinding: %s\nDetail: %s\n", j.customer, what, r.ID, j.at.UTC().Format(time.RFC1123), j.kind, j.detail)
	fmt.Fprintf(&b, "\nPlease resolve it with your customer; the provider has been told too.\n")
	out := make([]report.Message, 0, len(r.AbuseContacts))
	for _, to := range r.AbuseContacts {
		out = append(out, report.Message{To: to, Subject: subject, Text: b.String()})
	}
	return out
}
