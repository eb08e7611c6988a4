package reputation

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/aupguard/aupguard/internal/checks/optout"
	"github.com/aupguard/aupguard/internal/engine/policy"
)

// CheckName is the bounce-rate check's name in the chain.
const CheckName = "bounce_rate"

// Findings of the bounce_rate check.
const (
	FindingWarn = "bounce_rate_warn"
	FindingHigh = "bounce_rate_high"
)

// Replies of a bounce rate over act. RFC 3463 §3.8 X.7.1 (delivery not
// authorized) in its transient form: the customer may retry once the list
// is cleaned and the rate is back under the threshold, or the postmaster
// changes the outcome.
var (
	ReplyBulkSuspended = policy.MustReply(451, "4.7.1", "Bulk mail from this sender is suspended: too many recipients do not exist")
	ReplyAllSuspended  = policy.MustReply(451, "4.7.1", "Mail from this sender is suspended: too many recipients do not exist")
)

// Check is the bounce_rate check: at end of message it reads the
// customer's hard-bounce rate over the window (in the stage's one store
// batch, PrepareEOM) and
// reports bounce_rate_warn over warn and bounce_rate_high over act, the
// latter deferring the message as the customer's outcome says (report
// only, bulk mail only, all mail). When the message is accepted it
// remembers the queue id, so that the delivery log's results can be
// matched to the customer.
type Check struct {
	svc *Service
}

// NewCheck builds the bounce_rate check.
func NewCheck(svc *Service) *Check { return &Check{svc: svc} }

// Name implements policy.Check.
func (c *Check) Name() string { return CheckName }

// bulkOf says whether bounce_rate judged the message bulk.
var bulkOf = policy.NewState[bool]()

// EOM implements policy.EOMChecker.
func (c *Check) EOM(ctx context.Context, t *policy.Txn) ([]policy.Finding, error) {
	bulk := IsBulk(t)
	bulkOf.Set(t, bulk)
	var st Standing
	if p, ok := pendingOf.Get(t); ok {
		// Read in the stage's one batch (PrepareEOM).
		tot, err := p.result()
		if err != nil {
			return nil, err
		}
		st = c.svc.judge(t.Customer.ID, tot.Counts)
		c.svc.note(st)
	} else {
		var err error
		if st, err = c.svc.Standing(ctx, t.Customer.ID); err != nil {
			return nil, err
		}
	}
	attrs := map[string]string{
		"rate": pct(st.Rate), "hard": strconv.FormatInt(st.Hard, 10), "final": strconv.FormatInt(st.Final(), 10),
		"bulk": strconv.FormatBool(bulk), "outcome": string(st.Outcome),
	}
	desc := fmt.Sprintf("hard-bounce rate %s (%d of %d final results in %s)", pct(st.Rate), st.Hard, st.Final(), st.Window)
	switch st.Level {
	case LevelWarn:
		return []policy.Finding{{Name: FindingWarn, Action: policy.Accept, Attrs: attrs,
			Detail: fmt.Sprintf("%s above warn %s", desc, pct(st.Warn))}}, nil
	case LevelAct:
		f := policy.Finding{Name: FindingHigh, Action: policy.Accept, Attrs: attrs}
		switch {
		case st.Outcome == BounceDeferAll:
			f.Action, f.Reply = policy.Defer, ReplyAllSuspended
		case st.Outcome == BounceDeferBulk && bulk:
			f.Action, f.Reply = policy.Defer, ReplyBulkSuspended
		}
		f.Detail = fmt.Sprintf("%s above act %s; outcome %s", desc, pct(st.Act), st.Outcome)
		if st.Outcome == BounceDeferBulk && !bulk {
			f.Detail += " (not bulk: accepted)"
		}
		return []policy.Finding{f}, nil
	}
	return nil, nil
}

// Finish implements policy.Finisher: an accepted message's queue id is
// remembered with its customer.
func (c *Check) Finish(ctx context.Context, t *policy.Txn, accepted bool) {
	if !accepted || t.QueueID == "" || t.Customer == nil || t.Customer.ID == "" || t.DryRun {
		return
	}
	if p, ok := pendingOf.Get(t); ok && p.remembered {
		return // remembered in the end-of-message batch
	}
	bulk, _ := bulkOf.Get(t)
	ctx, cancel := c.svc.Store.Context(ctx)
	defer cancel()
	holder, err := c.svc.Backend.Remember(ctx, t.QueueID, Message{Customer: t.Customer.ID, Bulk: bulk}, c.svc.Reputation().Deliveries.QueueIDTTL)
	if err != nil {
		c.svc.Log.Error("remembering the queue id of an accepted message failed", "queue_id", t.QueueID, "customer", t.Customer.ID, "err", err)
		return
	}
	c.svc.claimed(t.QueueID, t.Customer.ID, holder)
}

// IsBulk reports whether a message is bulk mail: as bulk_mail judged it
// (headers or body fingerprint), else by its headers alone (Precedence:
// bulk or list, RFC 2076 §3.9 / RFC 3834 §3.1.8; a List-Id, RFC 2919 §3).
func IsBulk(t *policy.Txn) bool {
	if by, _ := optout.BulkBy.Get(t); by != "" {
		return true
	}
	for _, v := range t.HeaderValues("Precedence") {
		if p := strings.ToLower(strings.TrimSpace(strings.NewReplacer("\r\n", "", "\t", " ").Replace(v))); p == "bulk" || p == "list" {
			return true
		}
	}
	return len(t.HeaderValues("List-Id")) > 0
}
