package reputation

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/mailaddr"
	"github.com/aupguard/aupguard/internal/secrets"
	"github.com/aupguard/aupguard/internal/store"
)

// Rate levels of a customer's bounce rate.
const (
	LevelOK   = "ok"
	LevelWarn = "warn"
	LevelAct  = "act"
	// LevelLowVolume: fewer final results than min_volume in the window.
	LevelLowVolume = "low_volume"
)

// Settings are one customer's bounce settings.
type Settings struct {
	Warn      float64 `json:"warn"`
	Act       float64 `json:"act"`
	MinVolume int64   `json:"min_volume"`
	Outcome   Outcome `json:"outcome"`
}

// Standing is a customer's bounce standing over the window.
type Standing struct {
	Customer string        `json:"customer"`
	Window   time.Duration `json:"window"`
	Counts
	// Rate is hard bounces among final results.
	Rate  float64 `json:"hard_bounce_rate"`
	Level string  `json:"level"`
	Settings
}

// Service is what the bounce_rate check, the delivery-log reader, the
// reports and the admin API share: the backend and the config.
type Service struct {
	// Backend holds the counters, remembered queue ids and listings.
	Backend Backend
	Store   *store.Handle
	Secret  secrets.Key
	Clock   clock.Clock
	Log     *slog.Logger

	// last keeps each customer's latest standing seen by this process
	// (for /metrics and level-change log lines).
	mu     sync.Mutex
	last   map[string]Standing
	levels map[string]string
	cfg    atomic.Pointer[configs]

	// clashes counts transactions that claimed a queue id another customer
	// held already (kept for the first; see Backend.Remember). Shared by
	// every Service on the store (the check's, rebuilt at each reload, and
	// the daemon's delivery loop, which exports it).
	clashes *atomic.Uint64
}

// Clashes returns how many transactions claimed a queue id another
// customer held already, since start.
func (s *Service) Clashes() uint64 { return s.clashes.Load() }

// claimed notes the outcome of remembering a queue id for customer:
// holder is the customer that held it already ("" when recorded). A
// claim by another customer is logged and counted; the first stays.
func (s *Service) claimed(qid, customer, holder string) {
	if holder == "" || holder == customer {
		return
	}
	s.clashes.Add(1)
	if s.Log != nil {
		s.Log.Warn("queue id already held by another customer: kept the first", "event", "queue_id_clash",
			"queue_id", qid, "holder", holder, "claimed_by", customer)
	}
}

// configs are the config in force and its reputation: section, replaced
// together.
type configs struct {
	cfg *config.Config
	rep *Config
}

// Config returns the config in force.
func (s *Service) Config() *config.Config { return s.cfg.Load().cfg }

// Reputation returns the reputation: section of the config in force.
func (s *Service) Reputation() *Config { return s.cfg.Load().rep }

// SetConfig replaces the config (reload); the delivery source, the
// watched addresses and zones and the interval need a restart. A config
// whose reputation: section does not decode (it was validated at Parse:
// never in serve) keeps the section in force.
func (s *Service) SetConfig(cfg *config.Config) {
	rep, err := ConfigOf(cfg)
	if err != nil {
		s.Log.Error("reputation settings not replaced", "err", err)
		rep = s.Reputation()
	}
	s.cfg.Store(&configs{cfg: cfg, rep: rep})
}

// NewService opens the reputation backend of h for cfg, whose
// reputation: section it reads with ConfigOf.
func NewService(h *store.Handle, cfg *config.Config, key secrets.Key, clk clock.Clock, log *slog.Logger) (*Service, error) {
	rep, err := ConfigOf(cfg)
	if err != nil {
		return nil, err
	}
	b, err := Open(h)
	if err != nil {
		return nil, err
	}
	if clk == nil {
		clk = clock.System{}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cl, err := h.Shared("reputation-clashes", func() (any, error) { return new(atomic.Uint64), nil })
	if err != nil {
		return nil, err
	}
	s := &Service{Backend: b, Store: h, Secret: key, Clock: clk, Log: log, last: map[string]Standing{}, levels: map[string]string{},
		clashes: cl.(*atomic.Uint64)}
	s.cfg.Store(&configs{cfg: cfg, rep: rep})
	return s, nil
}

// Settings returns a customer's bounce settings.
func (s *Service) Settings(customer string) Settings {
	b := s.Reputation().Bounces
	st := Settings{Warn: b.Warn, Act: b.Act, MinVolume: int64(b.MinVolume), Outcome: b.Outcome}
	if o, ok := b.Customers[customer]; ok {
		if o.Outcome != "" {
			st.Outcome = o.Outcome
		}
		if o.Warn != nil {
			st.Warn = *o.Warn
		}
		if o.Act != nil {
			st.Act = *o.Act
		}
		if o.MinVolume != nil {
			st.MinVolume = int64(*o.MinVolume)
		}
	}
	return st
}

// judge computes a standing from counts.
func (s *Service) judge(customer string, c Counts) Standing {
	st := Standing{Customer: customer, Window: s.Reputation().Bounces.Window, Counts: c, Settings: s.Settings(customer)}
	st.Rate, st.Level = level(c, st.Settings)
	return st
}

// level judges a rate against the thresholds: exceeding one, not reaching
// it, moves up a level.
func level(c Counts, st Settings) (float64, string) {
	r := c.HardRate()
	switch {
	case c.Final() == 0 || c.Final() < st.MinVolume:
		return r, LevelLowVolume
	case r > st.Act:
		return r, LevelAct
	case r > st.Warn:
		return r, LevelWarn
	}
	return r, LevelOK
}

// window returns the bounce window ending at now.
func (s *Service) window(now time.Time) (time.Time, time.Time) {
	return now.Add(-s.Reputation().Bounces.Window), now.Add(time.Second)
}

// Standing reads a customer's bounce standing from the store.
func (s *Service) Standing(ctx context.Context, customer string) (Standing, error) {
	all, err := s.Standings(ctx, []string{customer})
	if err != nil {
		return Standing{}, err
	}
	return all[0], nil
}

// Standings reads several customers' standings in one round trip.
func (s *Service) Standings(ctx context.Context, customers []string) ([]Standing, error) {
	ctx, cancel := s.Store.Context(ctx)
	defer cancel()
	since, until := s.window(s.Clock.Now())
	t, err := s.Backend.Totals(ctx, customers, since, until)
	if err != nil {
		return nil, err
	}
	out := make([]Standing, len(customers))
	for i, c := range customers {
		out[i] = s.judge(c, t[c].Counts)
		s.note(out[i])
	}
	return out, nil
}

// note remembers a standing (for /metrics).
func (s *Service) note(st Standing) {
	s.mu.Lock()
	s.last[st.Customer] = st
	s.mu.Unlock()
}

// noteLevel remembers a standing and logs a change of level; the reader
// calls it, as results come in.
func (s *Service) noteLevel(st Standing) {
	s.note(st)
	s.mu.Lock()
	prev, had := s.levels[st.Customer]
	s.levels[st.Customer] = st.Level
	s.mu.Unlock()
	if had && prev != st.Level && (st.Level == LevelWarn || st.Level == LevelAct || prev == LevelWarn || prev == LevelAct) {
		s.Log.Warn("bounce rate level changed", "event", "bounce_rate_level", "customer", st.Customer,
			"from", prev, "to", st.Level, "rate", pct(st.Rate), "hard", st.Hard, "final", st.Final(),
			"window", st.Window.String(), "outcome", st.Outcome)
	}
}

// Latest returns the standings this process saw last, by customer.
func (s *Service) Latest() map[string]Standing {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]Standing, len(s.last))
	for k, v := range s.last {
		out[k] = v
	}
	return out
}

// rcptHash is the keyed hash of a logged recipient, the same hash the
// decision log uses for the address.
func (s *Service) rcptHash(addr string) string {
	canon := strings.ToLower(addr)
	if a, err := mailaddr.Parse(addr); err == nil {
		canon = a.Canonical(false, false)
	}
	return s.Secret.Hash("rcpt", canon)
}

func pct(r float64) string {
	return strconvFloat(r*100) + "%"
}
