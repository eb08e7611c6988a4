package optout

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/secrets"
	"github.com/aupguard/aupguard/internal/store"
)

// Service is the opt-out operations shared by the admin API, the
// unsubscribe endpoint, the commands and the checks.
type Service struct {
	// Backend holds the lists, counters and flags.
	Backend Backend
	// Settings are the opt-out settings decoded from Config.
	Settings *Settings
	// Config is the whole config the service was built for (customers).
	Config *config.Config
	// Known, when set, tells whether an id is a customer of the directory
	// in force (setup.Deps.Live); nil: a customer of Config.
	Known func(id string) bool
	Clock clock.Clock
	Log   *slog.Logger
	// Counters, when set, count what is recorded (/metrics).
	Counters Counters
	h        *store.Handle
}

// NewService opens the handle's opt-out backend for cfg.
func NewService(h *store.Handle, cfg *config.Config, key secrets.Key, clk clock.Clock, log *slog.Logger) (*Service, error) {
	if h == nil || cfg == nil {
		return nil, errors.New("optout: no store or config")
	}
	s, err := SettingsFromConfig(cfg, key)
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
	return &Service{Backend: b, Settings: s, Config: cfg, Clock: clk, Log: log, h: h}, nil
}

// ctx bounds one store operation (imports bound themselves per batch).
func (s *Service) ctx(ctx context.Context) (context.Context, context.CancelFunc) {
	if s.h == nil {
		return context.WithCancel(ctx)
	}
	return s.h.Context(ctx)
}

// key turns an address, or a stored hash, into the hash and (when the
// argument was an address) its canonical form.
func (s *Service) key(addrOrHash string) (hash, canonical string, err error) {
	addrOrHash = strings.TrimSpace(addrOrHash)
	if isHash(addrOrHash) {
		return addrOrHash, "", nil
	}
	c, err := s.Settings.Canonical(addrOrHash)
	if err != nil {
		return "", "", err
	}
	return s.Settings.Hash(c), c, nil
}

// ErrBadRequest marks errors in what a caller asked (bad address, list).
var ErrBadRequest = errors.New("bad request")

func badRequest(err error) error { return fmt.Errorf("%w: %v", ErrBadRequest, err) }

// Add puts an address on a list; added is false when it was there already
// (the first entry is kept). It returns once the entry is durable.
func (s *Service) Add(ctx context.Context, list, addr, source, note string) (Entry, bool, error) {
	if err := knownList(s.Config, list); err != nil {
		return Entry{}, false, badRequest(err)
	}
	if !validSource(source) {
		return Entry{}, false, badRequest(fmt.Errorf("unknown source %q", source))
	}
	c, err := s.Settings.Canonical(addr)
	if err != nil {
		return Entry{}, false, badRequest(err)
	}
	if len(note) > 500 {
		return Entry{}, false, badRequest(errors.New("note longer than 500 characters"))
	}
	e := s.Settings.NewEntry(list, c, source, note, s.Clock.Now())
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	n, err := s.Backend.Add(ctx, []Entry{e})
	if err != nil {
		return Entry{}, false, err
	}
	if n == 0 {
		old, ok, err := s.Backend.Get(ctx, list, e.Hash)
		if err == nil && ok {
			e = old
		}
	}
	s.countOptOut(source, n)
	s.Log.Info("opt-out recorded", "list", list, "rcpt_hash", e.Hash, "source", source, "new", n > 0)
	return e, n > 0, nil
}

// Remove takes an address (or stored hash) off a list.
func (s *Service) Remove(ctx context.Context, list, addrOrHash string) (bool, error) {
	if err := knownList(s.Config, list); err != nil {
		return false, badRequest(err)
	}
	h, _, err := s.key(addrOrHash)
	if err != nil {
		return false, badRequest(err)
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	ok, err := s.Backend.Remove(ctx, list, h)
	if err == nil && ok {
		s.Log.Info("opt-out removed", "list", list, "rcpt_hash", h)
	}
	return ok, err
}

// Check returns the entry that suppresses an address for a list: with a
// customer id, the customer's own entry or else the provider-wide one.
func (s *Service) Check(ctx context.Context, list, addrOrHash string) (Entry, bool, error) {
	if err := knownList(s.Config, list); err != nil {
		return Entry{}, false, badRequest(err)
	}
	h, _, err := s.key(addrOrHash)
	if err != nil {
		return Entry{}, false, badRequest(err)
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	which := list
	if list != GlobalList {
		if which, err = s.Backend.Lookup(ctx, list, h); err != nil || which == "" {
			return Entry{}, false, err
		}
	}
	return s.Backend.Get(ctx, which, h)
}

// Clear clears a customer's escalation flag.
func (s *Service) Clear(ctx context.Context, customer string) (bool, error) {
	if err := knownList(s.Config, customer); err != nil || customer == GlobalList {
		return false, badRequest(fmt.Errorf("bad customer id %q", customer))
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	ok, err := s.Backend.ClearFlag(ctx, customer)
	if err == nil {
		s.Log.Warn("customer flag cleared", "event", "customer_flag_cleared", "customer", customer, "was_flagged", ok)
	}
	return ok, err
}
