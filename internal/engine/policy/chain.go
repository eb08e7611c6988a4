package policy

import (
	"context"
	"fmt"
	"io"

	"github.com/aupguard/aupguard/internal/observability/panics"
)

// FindingError is the finding name under which a check's failure (store
// down, DNS timeout, panic) is reported.
const FindingError = "check_error"

// Step is one check in the chain with its provider-wide settings.
type Step struct {
	Check Check
	// Enabled is the provider-wide switch; a customer override wins.
	Enabled bool
	// Action, when set, replaces the check's default action for every finding.
	Action *Action
	// Findings replaces the action of single findings by name.
	Findings map[string]Action
	// OnError is what a failing check becomes: Defer (default) or Accept.
	OnError Action
}

// Chain runs checks one at a time in the configured order. The first defer
// or reject wins and ends the stage, so which reason wins is always the
// same for the same message. A quarantine is kept unless a later check
// defers or rejects, and does not end the stage: the checks after it still
// run (a held message is DKIM-signed, so that it can be released as is).
// For a customer in monitor mode every check runs and the verdict is what
// would have been done.
//
// Store work is batched per stage: when the stage reaches its first check
// that needs the store (a MailPreparer, RcptPreparer or EOMPreparer), every
// enabled check from there to the end of the chain adds its part to one
// batch, which runs once (one store round trip); the checks then decide in
// order as before, each from its own results. What a check reserved for a
// transaction that an earlier check then refused is given back by the
// check itself (at the next recipient or at Finish), so counters count
// only what was accepted.
type Chain struct {
	steps   []Step
	batches func() *Batch
	panics  *panics.Reporter
	// starters are the indexes in steps of the EOMStarters.
	starters []int
}

// ChainOption configures a chain.
type ChainOption func(*Chain)

// WithBatches gives the chain the store's batch factory; without it each
// check that needs the store makes its own round trip.
func WithBatches(newBatch func() *Batch) ChainOption {
	return func(c *Chain) { c.batches = newBatch }
}

// NewChain builds a chain from steps, in order.
func NewChain(steps []Step, opts ...ChainOption) *Chain {
	c := &Chain{steps: steps}
	for _, o := range opts {
		o(c)
	}
	for i, s := range steps {
		if _, ok := s.Check.(EOMStarter); ok {
			c.starters = append(c.starters, i)
		}
	}
	return c
}

// ReportPanics makes the chain log and count, through r, every panic of a
// check it recovers (the check still becomes its on_error).
func (c *Chain) ReportPanics(r *panics.Reporter) *Chain {
	c.panics = r
	return c
}

// Steps returns the chain's steps in order.
func (c *Chain) Steps() []Step { return c.steps }

// Result is one finding with the action the configuration gave it.
type Result struct {
	Check   string
	Finding Finding
	Action  Action
	Reply   Reply
}

// Verdict is the chain's decision at one stage.
type Verdict struct {
	// Action is the decision; Accept when nothing was decisive.
	Action Action
	// Reply is the reply for Defer and Reject (reference id not yet added).
	Reply Reply
	// Check and Finding name the deciding result (empty on accept).
	Check   string
	Finding string
	Detail  string
	// Results are all non-ignored results, in chain order, including those
	// after the deciding one in monitor mode.
	Results []Result
	// Monitor is set when the customer is in monitor mode: Action is what
	// would have been done, and the mail is accepted.
	Monitor bool
	// Errors counts checks that failed at this stage.
	Errors int
}

// Effective is the action actually taken: Accept in monitor mode.
func (v Verdict) Effective() Action {
	if v.Monitor && v.Action != Accept {
		return Accept
	}
	return v.Action
}

// Mail runs the MAIL FROM stage.
func (c *Chain) Mail(ctx context.Context, t *Txn) Verdict {
	return c.run(ctx, t, func(ch Check, b *Batch) bool {
		p, ok := ch.(MailPreparer)
		if ok && b != nil {
			p.PrepareMail(ctx, t, b)
		}
		return ok
	}, func(ch Check) (bool, []Finding, error) {
		m, ok := ch.(MailChecker)
		if !ok {
			return false, nil, nil
		}
		f, err := m.Mail(ctx, t)
		return true, f, err
	})
}

// Rcpt runs the RCPT TO stage for one recipient.
func (c *Chain) Rcpt(ctx context.Context, t *Txn, r *Rcpt) Verdict {
	return c.run(ctx, t, func(ch Check, b *Batch) bool {
		p, ok := ch.(RcptPreparer)
		if ok && b != nil {
			p.PrepareRcpt(ctx, t, r, b)
		}
		return ok
	}, func(ch Check) (bool, []Finding, error) {
		m, ok := ch.(RcptChecker)
		if !ok {
			return false, nil, nil
		}
		f, err := m.Rcpt(ctx, t, r)
		return true, f, err
	})
}

// EOM runs the end-of-message stage. The work of every enabled EOMStarter
// starts first, so that it runs while the checks before it decide and the
// stage's store batch makes its round trip; the checks then decide in
// chain order, each waiting for its own result.
func (c *Chain) EOM(ctx context.Context, t *Txn) Verdict {
	c.startEOM(ctx, t)
	return c.run(ctx, t, func(ch Check, b *Batch) bool {
		p, ok := ch.(EOMPreparer)
		if ok && b != nil {
			p.PrepareEOM(ctx, t, b)
		}
		return ok
	}, func(ch Check) (bool, []Finding, error) {
		m, ok := ch.(EOMChecker)
		if !ok {
			return false, nil, nil
		}
		f, err := m.EOM(ctx, t)
		return true, f, err
	})
}

// BodyWriters asks every enabled BodyChecker for its body writer.
func (c *Chain) BodyWriters(t *Txn) []io.Writer {
	var out []io.Writer
	for _, s := range c.steps {
		b, ok := s.Check.(BodyChecker)
		if !ok || !c.enabled(s, t.Customer) {
			continue
		}
		if w := c.safeBody(b, t); w != nil {
			out = append(out, w)
		}
	}
	return out
}

// Finish tells every enabled Finisher how the transaction ended, then
// runs the store work of every enabled FinishPreparer in one batch (none
// when nothing was added: the common case of an accepted message).
func (c *Chain) Finish(ctx context.Context, t *Txn, accepted bool) {
	var b *Batch
	if c.batches != nil {
		b = c.batches()
	}
	for _, s := range c.steps {
		if !c.enabled(s, t.Customer) {
			continue
		}
		if f, ok := s.Check.(Finisher); ok {
			func() {
				defer func() {
					if p := recover(); p != nil {
						c.panics.Recovered(panics.WhereCheck, s.Check.Name()+": finish", p)
					}
				}()
				f.Finish(ctx, t, accepted)
			}()
		}
		if f, ok := s.Check.(FinishPreparer); ok {
			func() {
				defer func() {
					if p := recover(); p != nil {
						c.panics.Recovered(panics.WhereCheck, s.Check.Name()+": finish", p)
					}
				}()
				f.PrepareFinish(ctx, t, accepted, b)
			}()
		}
	}
	if b != nil {
		_ = b.Exec(ctx) // each check logs its own failure
	}
}

// prepare adds the store work of the enabled checks from steps[from] on
// to one batch and runs it. A check that panics while preparing adds
// nothing; it then finds no prepared work and asks the store itself.
func (c *Chain) prepare(ctx context.Context, t *Txn, from int, prep func(Check, *Batch) bool) {
	b := c.batches()
	for _, s := range c.steps[from:] {
		if !c.enabled(s, t.Customer) {
			continue
		}
		func() {
			defer func() {
				if p := recover(); p != nil {
					c.panics.Recovered(panics.WhereCheck, s.Check.Name()+": prepare", p)
				}
			}()
			prep(s.Check, b)
		}()
	}
	_ = b.Exec(ctx) // a failure is each call's error, seen by its check
}

// startEOM starts the end-of-message work of the enabled EOMStarters. A
// starter that panics has started nothing; its EOM does the work itself.
func (c *Chain) startEOM(ctx context.Context, t *Txn) {
	for _, i := range c.starters {
		s := c.steps[i]
		if !c.enabled(s, t.Customer) {
			continue
		}
		func() {
			defer func() {
				if p := recover(); p != nil {
					c.panics.Recovered(panics.WhereCheck, s.Check.Name()+": start", p)
				}
			}()
			s.Check.(EOMStarter).StartEOM(ctx, t)
		}()
	}
}

// safeBody asks b for its body writer; a check that panics here gets no
// body (and its EOM check sees what it saw).
func (c *Chain) safeBody(b BodyChecker, t *Txn) (w io.Writer) {
	defer func() {
		if p := recover(); p != nil {
			c.panics.Recovered(panics.WhereCheck, b.Name()+": body", p)
			w = nil
		}
	}()
	return b.Body(t)
}

func (c *Chain) enabled(s Step, cust *Customer) bool {
	if cust != nil {
		if o, ok := cust.Overrides[s.Check.Name()]; ok && o.Enabled != nil {
			return *o.Enabled
		}
	}
	return s.Enabled
}

// call runs one check, turning a panic into an error so that no check can
// take the milter connection down; the panic is logged with its stack and
// counted.
func (c *Chain) call(fn func(Check) (bool, []Finding, error), ch Check) (ran bool, f []Finding, err error) {
	defer func() {
		if p := recover(); p != nil {
			c.panics.Recovered(panics.WhereCheck, ch.Name(), p)
			ran, f, err = true, nil, fmt.Errorf("check %s panicked: %v", ch.Name(), p)
		}
	}()
	return fn(ch)
}

func (c *Chain) run(ctx context.Context, t *Txn, prep func(Check, *Batch) bool, fn func(Check) (bool, []Finding, error)) Verdict {
	v := Verdict{Action: Accept}
	monitor := t.Customer != nil && t.Customer.Mode == Monitor
	v.Monitor = monitor
	prepared := c.batches == nil
	for i, s := range c.steps {
		if !c.enabled(s, t.Customer) {
			continue
		}
		if !prepared && isPreparer(s.Check, prep) {
			prepared = true
			c.prepare(ctx, t, i, prep)
		}
		ran, findings, err := c.call(fn, s.Check)
		if !ran {
			continue
		}
		if err != nil {
			v.Errors++
			findings = append(findings, errorFinding(s, err))
		}
		for _, f := range findings {
			r := resolve(s, t.Customer, f, err != nil && f.Name == FindingError)
			if r.Action == Ignore {
				continue
			}
			v.Results = append(v.Results, r)
			if r.Action.Decisive() && (!v.Action.Decisive() || v.Action == Quarantine && r.Action != Quarantine) {
				v.Action, v.Reply = r.Action, r.Reply
				v.Check, v.Finding, v.Detail = r.Check, f.Name, f.Detail
			}
		}
		if (v.Action == Defer || v.Action == Reject) && !monitor {
			break
		}
	}
	return v
}

// isPreparer reports whether ch has store work at the stage prep is for
// (prep with a nil batch only answers).
func isPreparer(ch Check, prep func(Check, *Batch) bool) bool {
	return prep(ch, nil)
}

func errorFinding(s Step, err error) Finding {
	f := Finding{Name: FindingError, Detail: err.Error(), Action: s.OnError}
	if r, ok := errorReply(err); ok {
		f.Reply = r
	} else {
		f.Reply = ReplyTempFailure
	}
	return f
}

// resolve applies the configuration to a finding. Precedence, most specific
// first: the customer's per-finding action, the customer's per-check action,
// the provider's per-finding action, the provider's per-check action, the
// check's own default. A check failure only follows on_error.
func resolve(s Step, cust *Customer, f Finding, isError bool) Result {
	name := s.Check.Name()
	act := f.Action
	if !isError {
		if s.Action != nil {
			act = *s.Action
		}
		if a, ok := s.Findings[f.Name]; ok {
			act = a
		}
		if cust != nil {
			if o, ok := cust.Overrides[name]; ok {
				if o.Action != nil {
					act = *o.Action
				}
				if a, ok := o.Findings[f.Name]; ok {
					act = a
				}
			}
		}
	}
	return Result{Check: name, Finding: f, Action: act, Reply: ReplyFor(act, f.Reply)}
}

// ReplyFor picks the reply for an action. The finding's own reply is kept
// when its class matches the action (4xx for defer, 5xx for reject); when the
// configuration moved the finding to the other class, its text and enhanced
// subject/detail are kept under a code of the right class (550 or 451), so a
// reconfigured action never sends a reply whose classes disagree.
func ReplyFor(a Action, suggested Reply) Reply {
	switch a {
	case Reject:
		if suggested.IsZero() {
			return ReplyPolicyReject
		}
		if !suggested.Temporary() {
			return suggested
		}
		return reclass(suggested, 550, "5")
	case Defer:
		if suggested.IsZero() {
			return ReplyPolicyDefer
		}
		if suggested.Temporary() {
			return suggested
		}
		return reclass(suggested, 451, "4")
	}
	return Reply{}
}

func reclass(r Reply, code int, class string) Reply {
	enh := class + r.enhanced[1:]
	n, err := NewReply(code, enh, r.text)
	if err != nil {
		return ReplyPolicyDefer
	}
	return n
}
