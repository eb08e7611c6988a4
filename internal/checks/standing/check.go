package standing

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/aupguard/aupguard/internal/engine/policy"
)

// Check is the standing check: at MAIL FROM it looks up the stops of the
// message's customer, its reseller and its login in the View, and answers
// with the most severe one in force: hold (the message is accepted into
// Postfix's HOLD queue at end of message), defer (451 4.7.1) or reject
// (550 5.7.1), the reply naming the stop's reason.
type Check struct {
	v *View
}

// NewCheck builds the check on a view.
func NewCheck(v *View) *Check { return &Check{v: v} }

// Name implements policy.Check.
func (*Check) Name() string { return CheckName }

// genRead is the generation read a transaction's MAIL batch carries.
var genRead = policy.NewState[*redis.StringCmd]()

// PrepareMail implements policy.MailPreparer: on Redis, when the view's
// copy is older than standing.refresh, one GET of the generation counter
// joins the stage's batch (nothing otherwise).
func (c *Check) PrepareMail(ctx context.Context, t *policy.Txn, b *policy.Batch) {
	if c.v.redis == nil || !c.v.stale(c.v.clk.Now()) {
		return
	}
	if b == nil || !b.Redis() {
		return
	}
	genRead.Set(t, c.v.genCmd(ctx, b))
}

// Keys returns the stop keys that concern a transaction: its customer,
// its customer's reseller and its login.
func Keys(t *policy.Txn) []string {
	keys := make([]string, 0, 3)
	if t.Customer != nil {
		keys = append(keys, Key(ScopeCustomer, t.Customer.ID))
		if r := resellerOf(t.Customer); r != "" {
			keys = append(keys, Key(ScopeReseller, r))
		}
	}
	if l := LoginOf(t.Conn); l != "" {
		keys = append(keys, Key(ScopeLogin, l))
	}
	return keys
}

// LoginOf is the login of a connection: the SASL login, else the Unix
// login of locally submitted mail.
func LoginOf(c *policy.Conn) string {
	if c == nil {
		return ""
	}
	if c.AuthLogin != "" {
		return c.AuthLogin
	}
	return c.LocalLogin
}

// Mail implements policy.MailChecker.
func (c *Check) Mail(ctx context.Context, t *policy.Txn) ([]policy.Finding, error) {
	cmd, _ := genRead.Get(t)
	genRead.Clear(t)
	s := c.v.current(ctx, cmd)
	if s == nil || len(s.stops) == 0 {
		return nil, nil
	}
	st, ok := s.match(c.v.clk.Now(), Keys(t)...)
	if !ok {
		return nil, nil
	}
	return []policy.Finding{findingFor(st)}, nil
}

// findingFor is the finding of a stop.
func findingFor(st Stop) policy.Finding {
	f := policy.Finding{
		Detail: fmt.Sprintf("%s %s stopped (%s, by %s, %s): %s", st.Scope, st.ID, st.Source, st.Who, st.When.UTC().Format("2006-01-02T15:04:05Z"), st.Reason),
		Attrs:  map[string]string{"scope": string(st.Scope), "id": st.ID, "source": st.Source},
	}
	switch st.Action {
	case ActionReject:
		f.Name, f.Action, f.Reply = FindingReject, policy.Reject, replyReject.WithText(replyReject.Text()+": "+replyReason(st.Reason))
	case ActionDefer:
		f.Name, f.Action, f.Reply = FindingDefer, policy.Defer, replyDefer.WithText(replyDefer.Text()+": "+replyReason(st.Reason))
	default:
		f.Name, f.Action = FindingHold, policy.Quarantine
	}
	return f
}
