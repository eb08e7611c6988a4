package gateway

import (
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/aupguard/aupguard/config"
	"github.com/aupguard/aupguard/customer"
	"github.com/aupguard/aupguard/policy"
)

// State is everything built from one config: the customer directory and the
// chain. A reload builds a new State and swaps it in; transactions already
// under way finish on the State they started with.
type State struct {
	Config *config.Config
	Dir    *customer.Directory
	Chain  *policy.Chain
	Deps   *Deps

	unidentifiedAction policy.Action
	unidentifiedReply  policy.Reply

	mu      sync.Mutex
	users   int
	retired bool
	closers []io.Closer
}

// NewState builds a State around a chain made by the caller (tests,
// benchmarks); Build makes the chain from the config.
func NewState(d *Deps, chain *policy.Chain) (*State, error) {
	st, err := newState(d)
	if err != nil {
		return nil, err
	}
	st.Chain = chain
	return st, nil
}

func newState(d *Deps) (*State, error) {
	cfg := d.Config
	dir, err := customer.NewDirectory(cfg)
	if err != nil {
		return nil, err
	}
	st := &State{Config: cfg, Dir: dir, Deps: d}
	st.unidentifiedAction, _ = policy.ParseAction(cfg.Unidentified.Action)
	st.unidentifiedReply = policy.ReplyRelayDenied
	if st.unidentifiedAction == policy.Defer {
		st.unidentifiedReply = policy.ReplyPolicyDefer
	}
	if u := cfg.Unidentified; u.Code != 0 {
		r, err := policy.NewReply(u.Code, u.Enhanced, u.Text)
		if err != nil {
			return nil, fmt.Errorf("unidentified: %w", err)
		}
		st.unidentifiedReply = r
	}
	return st, nil
}

// Build builds a State from d.Config: every check of the chain is
// constructed by its factory. Every error is returned, not just the first.
func Build(d *Deps) (*State, error) {
	cfg := d.Config
	st, err := newState(d)
	if err != nil {
		return nil, err
	}
	storeOnError, _ := policy.ParseAction(cfg.Store.OnError)
	var steps []policy.Step
	var errs []error
	for _, name := range cfg.Chain {
		p, ok := registry[name]
		if !ok {
			errs = append(errs, fmt.Errorf("chain: unknown check %q", name))
			continue
		}
		ch, err := p.factory(d)
		if err != nil {
			errs = append(errs, fmt.Errorf("check %s: %w", name, err))
			continue
		}
		if c, ok := ch.(io.Closer); ok {
			st.closers = append(st.closers, c)
		}
		step := policy.Step{Check: ch, Enabled: cfg.CheckEnabled(name), OnError: storeOnError}
		if cc, ok := cfg.Checks[name]; ok {
			if cc.Action != "" {
				a, _ := policy.ParseAction(cc.Action)
				step.Action = &a
			}
			if cc.OnError != "" {
				step.OnError, _ = policy.ParseAction(cc.OnError)
			}
			for f, s := range cc.Findings {
				if step.Findings == nil {
					step.Findings = map[string]policy.Action{}
				}
				step.Findings[f], _ = policy.ParseAction(s)
			}
		}
		steps = append(steps, step)
	}
	if len(errs) > 0 {
		st.closeAll()
		return nil, errors.Join(errs...)
	}
	st.Chain = policy.NewChain(steps).ReportPanics(d.Panics)
	return st, nil
}

// acquire pins the State for one transaction.
func (s *State) acquire() {
	s.mu.Lock()
	s.users++
	s.mu.Unlock()
}

// release unpins; the last user of a retired State closes its checks.
func (s *State) release() {
	s.mu.Lock()
	s.users--
	done := s.retired && s.users == 0
	s.mu.Unlock()
	if done {
		s.closeAll()
	}
}

// retire marks the State replaced; it is closed once no transaction uses it.
func (s *State) retire() {
	s.mu.Lock()
	s.retired = true
	done := s.users == 0
	s.mu.Unlock()
	if done {
		s.closeAll()
	}
}

func (s *State) closeAll() {
	for _, c := range s.closers {
		_ = c.Close()
	}
	s.closers = nil
}
