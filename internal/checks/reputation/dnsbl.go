package reputation

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aupguard/aupguard/internal/engine/config"
)

// Resolver is what the watcher needs of the provider's resolver.
type Resolver interface {
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
}

// ComplaintFunc returns a customer's complaint count, delivered count and
// complaint rate (optout.Status).
type ComplaintFunc func(ctx context.Context, customer string) (complaints, delivered int64, rate float64, err error)

// NotifyFunc mails the postmaster.
type NotifyFunc func(ctx context.Context, subject, body string) error

// Watcher queries the configured DNS blocklists for each egress address
// every interval and keeps the listing state with its history. When an
// address becomes listed it logs, counts, and mails the postmaster once
// (one MTA of many: the store decides who) with the senders through that
// address in the window before the listing.
type Watcher struct {
	svc        *Service
	R          Resolver
	Notify     NotifyFunc
	Complaints ComplaintFunc
	Stats      *WatcherStats
}

// WatcherStats are the watcher's counters and its latest states.
type WatcherStats struct {
	mu     sync.Mutex
	states map[ListingKey]Listing
	// Listings counts transitions to listed, by key.
	listings map[ListingKey]int64
	// Queries counts queries by zone and result (listed, clean, error_code,
	// unexpected, failed).
	queries map[[2]string]int64
	// Mails counts postmaster mails sent; MailErrors those that failed.
	Mails, MailErrors atomic.Int64
}

func newWatcherStats() *WatcherStats {
	return &WatcherStats{states: map[ListingKey]Listing{}, listings: map[ListingKey]int64{}, queries: map[[2]string]int64{}}
}

// NewWatcher returns a watcher for svc's config.
func NewWatcher(svc *Service, r Resolver) *Watcher {
	return &Watcher{svc: svc, R: r, Stats: newWatcherStats()}
}

// Keys returns the (address, zone) pairs the reputation: section watches.
func Keys(cfg *Config) []ListingKey {
	var out []ListingKey
	for _, a := range cfg.DNSBL.Addresses {
		for _, z := range cfg.DNSBL.Zones {
			out = append(out, ListingKey{Address: a.String(), Zone: z.Zone})
		}
	}
	return out
}

// Run queries every interval until ctx ends; the first round is at once.
func (w *Watcher) Run(ctx context.Context) error {
	l := w.svc.Reputation().DNSBL
	addrs := make([]string, len(l.Addresses))
	for i, a := range l.Addresses {
		addrs[i] = a.String()
	}
	w.svc.Log.Info("blocklist watch started", "addresses", strings.Join(addrs, ","), "zones", len(l.Zones), "interval", l.Interval.String())
	t := time.NewTicker(l.Interval)
	defer t.Stop()
	for {
		w.Round(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Round queries every address in every zone once.
func (w *Watcher) Round(ctx context.Context) {
	cfg := w.svc.Reputation().DNSBL
	for _, a := range cfg.Addresses {
		for _, z := range cfg.Zones {
			if ctx.Err() != nil {
				return
			}
			w.check(ctx, a.Addr, z)
		}
	}
}

// reverseName builds the DNSBL query name: the address's octets (IPv4) or
// nibbles (IPv6) in reverse order under the zone (RFC 5782 §2.1, §2.4).
func reverseName(a netip.Addr, zone string) (string, error) {
	if !a.IsValid() {
		return "", errors.New("no address")
	}
	a = a.Unmap()
	var parts []string
	b := a.AsSlice()
	if a.Is4() {
		for i := len(b) - 1; i >= 0; i-- {
			parts = append(parts, fmt.Sprint(b[i]))
		}
	} else {
		const hex = "0123456789abcdef"
		for i := len(b) - 1; i >= 0; i-- {
			parts = append(parts, string(hex[b[i]&0xf]), string(hex[b[i]>>4]))
		}
	}
	return strings.Join(parts, ".") + "." + zone, nil
}

// Query asks one zone about one address. RFC 5782 §2.1: an A record in
// 127.0.0.0/8 means listed, NXDOMAIN means not listed; the zone's
// documented codes decide which answers are listings and which are error
// codes (Spamhaus 127.255.255.x: the query was refused, nothing is said
// about the address). A failed query or an answer the zone does not
// document (a resolver that rewrites NXDOMAIN, say) is not an answer.
// z is a zone as the reputation: section decoded it (its answer ranges
// parsed).
func Query(ctx context.Context, r Resolver, addr netip.Addr, z DNSBLZone) (Observation, string) {
	name, err := reverseName(addr, z.Zone)
	if err != nil {
		return Observation{Error: err.Error()}, "failed"
	}
	ips, err := r.LookupIPAddr(ctx, name)
	if err != nil {
		var de *net.DNSError
		if errors.As(err, &de) && de.IsNotFound {
			return Observation{Answered: true}, "clean"
		}
		return Observation{Error: "query " + name + ": " + err.Error()}, "failed"
	}
	var listed, codes, unexpected []string
	for _, ip := range ips {
		a, ok := netip.AddrFromSlice(ip.IP)
		if !ok {
			continue
		}
		a = a.Unmap()
		if !a.Is4() {
			continue
		}
		switch {
		case inRanges(a, z.ErrorRanges):
			codes = append(codes, a.String())
		case inRanges(a, z.ListedRanges):
			listed = append(listed, a.String())
		default:
			unexpected = append(unexpected, a.String())
		}
	}
	switch {
	case len(listed) > 0:
		return Observation{Answered: true, Listed: true, Codes: listed}, "listed"
	case len(codes) > 0:
		return Observation{Error: "zone " + z.Zone + " answered error code " + strings.Join(codes, ",") + " (query refused, not a listing)"}, "error_code"
	case len(unexpected) > 0:
		return Observation{Error: "zone " + z.Zone + " answered undocumented " + strings.Join(unexpected, ",") + " (not a listing)"}, "unexpected"
	}
	return Observation{Answered: true}, "clean"
}

func inRanges(a netip.Addr, rs []IPRange) bool {
	for _, r := range rs {
		if r.Contains(a) {
			return true
		}
	}
	return false
}

// check queries one address in one zone and acts on the outcome.
func (w *Watcher) check(ctx context.Context, ip netip.Addr, z DNSBLZone) {
	log := w.svc.Log
	addr := ip.String()
	k := ListingKey{Address: addr, Zone: z.Zone}
	o, result := Query(ctx, w.R, ip, z)
	w.Stats.mu.Lock()
	w.Stats.queries[[2]string{z.Zone, result}]++
	w.Stats.mu.Unlock()
	now := w.svc.Clock.Now()
	sctx, cancel := w.svc.Store.Context(ctx)
	before, after, err := w.svc.Backend.Observe(sctx, k, o, now, w.svc.Reputation().DNSBL.History)
	cancel()
	if err != nil {
		log.Error("blocklist state not stored", "event", "dnsbl_store_failed", "address", addr, "zone", z.Zone, "err", err)
		return
	}
	w.Stats.mu.Lock()
	w.Stats.states[k] = after
	w.Stats.mu.Unlock()
	if !o.Answered {
		log.Warn("blocklist query failed: state kept", "event", "dnsbl_query_failed", "address", addr, "zone", z.Zone,
			"result", result, "listed", after.Listed, "err", o.Error)
	}
	switch {
	case after.Listed && (!before.Known || !before.Listed):
		w.Stats.mu.Lock()
		w.Stats.listings[k]++
		w.Stats.mu.Unlock()
		log.Error("egress address listed", "event", "dnsbl_listed", "address", addr, "zone", z.Zone,
			"codes", strings.Join(after.Codes, ","), "since", after.Since.UTC().Format(time.RFC3339))
	case before.Known && before.Listed && after.Known && !after.Listed:
		log.Warn("egress address delisted", "event", "dnsbl_delisted", "address", addr, "zone", z.Zone,
			"listed_since", before.Since.UTC().Format(time.RFC3339))
	}
	if after.Listed && !after.Notified {
		w.notify(ctx, after)
	}
}

// notify mails the postmaster about a listing, once across MTAs.
func (w *Watcher) notify(ctx context.Context, l Listing) {
	if w.Notify == nil {
		return
	}
	log := w.svc.Log
	sctx, cancel := w.svc.Store.Context(ctx)
	claimed, err := w.svc.Backend.ClaimNotice(sctx, l.ListingKey)
	cancel()
	if err != nil || !claimed {
		return
	}
	sctx, cancel = w.svc.Store.Context(ctx)
	if full, err := w.svc.Backend.Listings(sctx, []ListingKey{l.ListingKey}); err == nil && len(full) == 1 {
		l.History = full[0].History
	}
	cancel()
	rows, err := w.TopSenders(ctx, l.Address, l.Since)
	if err != nil {
		log.Warn("listing report without senders", "address", l.Address, "err", err)
	}
	subj, body := ListingMail(w.svc.Config(), w.svc.Reputation(), l, rows, err)
	if err := w.Notify(ctx, subj, body); err != nil {
		w.Stats.MailErrors.Add(1)
		log.Error("postmaster mail about a listing failed: retried next round", "event", "dnsbl_mail_failed", "address", l.Address, "zone", l.Zone, "err", err)
		uctx, cancel := w.svc.Store.Context(context.WithoutCancel(ctx))
		_ = w.svc.Backend.Unclaim(uctx, l.ListingKey)
		cancel()
		return
	}
	w.Stats.Mails.Add(1)
	log.Info("postmaster told of a listing", "event", "dnsbl_mail_sent", "address", l.Address, "zone", l.Zone, "senders", len(rows))
}

// SenderRow is one customer in a listing report.
type SenderRow struct {
	Customer string `json:"customer"`
	Name     string `json:"name,omitempty"`
	// Deliveries are final results through the listed address in the
	// window; Share their part of all of them.
	Deliveries int64   `json:"deliveries"`
	Share      float64 `json:"share"`
	// Counts and HardRate are the customer's results (all egress
	// addresses) in the same window.
	Counts
	HardRate float64 `json:"hard_bounce_rate"`
	// Complaints over the complaint window (optout).
	Complaints    int64   `json:"complaints"`
	Delivered     int64   `json:"delivered"`
	ComplaintRate float64 `json:"complaint_rate"`
}

// TopSenders ranks the customers by their deliveries through addr in the
// report window before t, with their bounce and complaint rates.
func (w *Watcher) TopSenders(ctx context.Context, addr string, t time.Time) ([]SenderRow, error) {
	cfg, rep := w.svc.Config(), w.svc.Reputation()
	ids := make([]string, 0, len(cfg.Customers))
	names := map[string]string{}
	for _, c := range cfg.Customers {
		ids = append(ids, c.ID)
		names[c.ID] = c.Name
	}
	sctx, cancel := w.svc.Store.Context(ctx)
	tot, err := w.svc.Backend.Totals(sctx, ids, t.Add(-rep.DNSBL.ReportWindow), t.Add(time.Second))
	cancel()
	if err != nil {
		return nil, err
	}
	var all int64
	var rows []SenderRow
	for _, id := range ids {
		tt := tot[id]
		n := tt.Egress[addr]
		if n == 0 {
			continue
		}
		all += n
		rows = append(rows, SenderRow{Customer: id, Name: names[id], Deliveries: n, Counts: tt.Counts, HardRate: tt.HardRate()})
	}
	sort.Slice(rows, func(i, j int) bool {
		if rows[i].Deliveries != rows[j].Deliveries {
			return rows[i].Deliveries > rows[j].Deliveries
		}
		return rows[i].Customer < rows[j].Customer
	})
	if top := rep.DNSBL.Top; top > 0 && len(rows) > top {
		rows = rows[:top]
	}
	for i := range rows {
		rows[i].Share = float64(rows[i].Deliveries) / float64(all)
		if w.Complaints != nil {
			c, d, r, err := w.Complaints(ctx, rows[i].Customer)
			if err == nil {
				rows[i].Complaints, rows[i].Delivered, rows[i].ComplaintRate = c, d, r
			}
		}
	}
	return rows, nil
}

// States returns the latest states this watcher saw.
func (s *WatcherStats) States() []Listing {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Listing, 0, len(s.states))
	for _, l := range s.states {
		out = append(out, l)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

// ListingMail renders the postmaster mail about a listing (cfg gives the
// subject prefix, rep the report window).
func ListingMail(cfg *config.Config, rep *Config, l Listing, rows []SenderRow, rowsErr error) (subject, body string) {
	subject = fmt.Sprintf("egress %s listed on %s (%s)", l.Address, l.Zone, strings.Join(l.Codes, ","))
	if p := cfg.Reports.SubjectPrefix; p != "" {
		subject = p + " " + subject
	}
	var b strings.Builder
	fmt.Fprintf(&b, "The egress address %s is listed on the DNS blocklist %s since %s.\n", l.Address, l.Zone, l.Since.UTC().Format(time.RFC3339))
	fmt.Fprintf(&b, "Answer: %s\n\n", strings.Join(l.Codes, ", "))
	win := rep.DNSBL.ReportWindow
	fmt.Fprintf(&b, "Customers who sent most through %s in the %s before the listing\n", l.Address, win)
	b.WriteString("(deliveries: final results through this address; bounce rate: hard bounces among final results,\nall addresses, same window; complaint rate: complaint window of optout):\n\n")
	switch {
	case rowsErr != nil:
		fmt.Fprintf(&b, "  (not available: %v)\n", rowsErr)
	case len(rows) == 0:
		b.WriteString("  (no delivery through this address was recorded in the window)\n")
	default:
		fmt.Fprintf(&b, "  %-20s %10s %7s %8s %8s %10s %10s\n", "customer", "deliveries", "share", "hard", "bounce%", "complaints", "complaint%")
		for _, r := range rows {
			fmt.Fprintf(&b, "  %-20s %10d %6.1f%% %8d %7.2f%% %10d %9.3f%%\n", clip(r.Customer, 20), r.Deliveries, r.Share*100,
				r.Hard, r.HardRate*100, r.Complaints, r.ComplaintRate*100)
		}
	}
	if len(l.History) > 0 {
		b.WriteString("\nHistory of this address on this list (newest first):\n")
		for i, h := range l.History {
			if i == 10 {
				break
			}
			state := "not listed"
			if h.Listed {
				state = "listed " + strings.Join(h.Codes, ",")
			}
			fmt.Fprintf(&b, "  %s  %s\n", h.Time.UTC().Format(time.RFC3339), state)
		}
	}
	b.WriteString("\nThis mail is sent once per listing. The state is on the admin dashboard and in\n/metrics (aupguard_dnsbl_listed).\n")
	return subject, b.String()
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
