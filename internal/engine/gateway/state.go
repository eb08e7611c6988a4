package gateway

import (
	"errors"
	"fmt"

	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/customer"
	"github.com/aupguard/aupguard/internal/engine/policy"
	"github.com/aupguard/aupguard/internal/engine/setup"
)

// State is everything built from one config: the customer directory and the
// chain. A reload builds a new State and swaps it in; transactions already
// under way finish on the State they started with.
type State struct {
	Config *config.Config
	Dir    *customer.Directory
	Chain  *policy.Chain
	Deps   *setup.Deps

	// Local attributes mail submitted on the MTA host itself.
	Local *customer.LocalIdentifier

	unidentifiedAction policy.Action
	unidentifiedReply  policy.Reply
	// rcptCaseSensitive and rcptFold are how recipients are canonicalised for their keyed hash
	// in decisions: the form a family declares (setup.Family.RecipientForm,
	// opt-out's: one hash of a recipient everywhere).
	rcptCaseSensitive, rcptFold bool
}

// NewState builds a State around a chain made by the caller (tests,
// benchmarks); Build makes the chain from the config.
func NewState(d *setup.Deps, chain *policy.Chain) (*State, error) {
	st, err := newState(d)
	if err != nil {
		return nil, err
	}
	st.Chain = chain
	return st, nil
}

func newState(d *setup.Deps) (*State, error) {
	cfg := d.Config
	dir := d.Directory
	if dir == nil {
		var err error
		if dir, err = customer.NewDirectory(cfg); err != nil {
			return nil, err
		}
	}
	local, err := customer.NewLocalIdentifier(cfg, dir)
	if err != nil {
		return nil, err
	}
	st := &State{Config: cfg, Dir: dir, Local: local, Deps: d}
	for _, f := range setup.Families() {
		if f.RecipientForm != nil {
			if st.rcptCaseSensitive, st.rcptFold, err = f.RecipientForm(cfg); err != nil {
				return nil, err
			}
			break
		}
	}
	// Decoded by config.Parse; a config built by hand without one refuses
	// unidentified mail, as the default does.
	st.unidentifiedAction = policy.Reject
	if a, ok := cfg.Unidentified.Action.Get(); ok {
		st.unidentifiedAction = a
	}
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
func Build(d *setup.Deps) (*State, error) {
	cfg := d.Config
	st, err := newState(d)
	if err != nil {
		return nil, err
	}
	var errs []error
	storeOnError := policy.Defer
	if a, ok := cfg.Store.OnError.Get(); ok {
		storeOnError = a
	}
	// A check reads the outputs of the checks it needs (Spec.Needs): they
	// must run before it. config.Parse says so at the line; a config built
	// by hand is held to it here.
	reg := registry()
	specs := make(map[string]policy.Spec, len(reg))
	for n, p := range reg {
		specs[n] = p.spec
	}
	for _, pr := range policy.CheckChain(cfg.Chain, specs) {
		errs = append(errs, errors.New("chain: "+pr.Msg))
	}
	var steps []policy.Step
	for _, name := range cfg.Chain {
		p, ok := reg[name]
		if !ok {
			errs = append(errs, fmt.Errorf("chain: unknown check %q", name))
			continue
		}
		ch, err := p.factory(d)
		if err != nil {
			errs = append(errs, fmt.Errorf("check %s: %w", name, err))
			continue
		}
		steps = append(steps, stepFor(ch, cfg, name, storeOnError))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if d.Live != nil {
		d.Live.Set(st.Dir) // the directory in force once st is swapped in
	}
	var opts []policy.ChainOption
	if h := d.Store; h != nil {
		// One store round trip per stage: the checks that need the store
		// at a stage add their work to one batch (store.Batch).
		opts = append(opts, policy.WithBatches(h.NewBatch))
	}
	st.Chain = policy.NewChain(steps, opts...).ReportPanics(d.Panics)
	return st, nil
}

// stepFor puts a check in the chain with its provider-wide settings
// (their actions were decoded by config.Parse).
func stepFor(ch policy.Check, cfg *config.Config, name string, storeOnError policy.Action) policy.Step {
	step := policy.Step{Check: ch, Enabled: cfg.CheckEnabled(name), OnError: storeOnError}
	cc, ok := cfg.Checks[name]
	if !ok {
		return step
	}
	if a, ok := cc.Action.Get(); ok {
		step.Action = &a
	}
	if a, ok := cc.OnError.Get(); ok {
		step.OnError = a
	}
	for f, fa := range cc.Findings {
		a, ok := fa.Get()
		if !ok {
			continue
		}
		if step.Findings == nil {
			step.Findings = map[string]policy.Action{}
		}
		step.Findings[f] = a
	}
	return step
}
