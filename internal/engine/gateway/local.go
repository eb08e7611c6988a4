package gateway

import (
	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/policy"
	"github.com/aupguard/aupguard/internal/mailaddr"
)

var (
	// Locally submitted mail no customer is known to have sent
	// (local_submission.unattributed); RFC 3463 §3.8: X.7.1 delivery not
	// authorized. A defer leaves it in Postfix's maildrop queue.
	replyLocalDefer  = policy.MustReply(451, "4.7.1", "Local sender not attributed to a customer, try again later")
	replyLocalReject = policy.MustReply(550, "5.7.1", "Local sender not attributed to a customer")
)

// localMail is what differs for mail submitted on the MTA host itself
// (sendmail, PHP mail(), cron; customer.IsLocalSubmission), chosen once per
// connection (Session.SetLocalSubmission): a session of an SMTP client has
// none, and every method of a nil *localMail leaves the SMTP behaviour as
// it is.
//
// Such mail has no login and no client network: it is attributed by the
// sender (customer.LocalIdentifier). And Postfix cannot refuse one
// recipient of it: a milter's RCPT refusal makes cleanup log "milter
// configuration error: can't reject recipient in non-smtpd(8) submission"
// and keep the whole message in the maildrop queue, retried for ever. So
// the recipients refused at RCPT are kept until end of message, where
// Postfix can act on them (settle, dropped).
type localMail struct {
	refused []localRefusal
}

// localRefusal is a recipient refused at RCPT in locally submitted mail.
type localRefusal struct {
	rcpt string
	v    policy.Verdict
	out  Outcome
}

// localIdentity is the attribution of a locally submitted message: its
// customer, or the refusal when there is none.
type localIdentity struct {
	cust   *policy.Customer
	by     string
	login  string
	action policy.Action
	reply  policy.Reply
	detail string
}

// identify attributes the message by its sender (customer.LocalIdentifier);
// an unattributed one gets local_submission.unattributed's refusal.
func (l *localMail) identify(st *State, sender mailaddr.Address) localIdentity {
	res := st.Local.Identify(sender)
	id := localIdentity{cust: res.Customer, by: res.By, login: res.Login, detail: res.Detail}
	if res.Customer == nil {
		id.action, id.reply = policy.Defer, replyLocalDefer
		if res.Outcome == config.LocalUnattributedReject {
			id.action, id.reply = policy.Reject, replyLocalReject
		}
	}
	return id
}

// reset forgets the refusals of the previous transaction.
func (l *localMail) reset() {
	if l != nil {
		l.refused = nil
	}
}

// keepRefusal keeps a recipient refused at RCPT for end of message and
// returns the answer Postfix gets now (go on), true; false for SMTP mail,
// whose refusal is answered at once.
func (l *localMail) keepRefusal(rcpt string, v policy.Verdict, out Outcome) (Outcome, bool) {
	if l == nil {
		return out, false
	}
	l.refused = append(l.refused, localRefusal{rcpt: rcpt, v: v, out: out})
	return Outcome{Action: policy.Accept}, true
}

// settle decides, at end of message, what the recipients refused at RCPT
// make of the message: a temporary refusal defers the whole message (it
// stays in the maildrop queue and is retried; nothing is delivered twice),
// and refusals of every recipient (none accepted) reject it (Postfix
// bounces it to the sender with the reason). It returns the RCPT verdict to
// answer with, or false when the message goes on to the recipients not
// refused (dropped).
func (l *localMail) settle(accepted int) (policy.Verdict, bool) {
	if l == nil {
		return policy.Verdict{}, false
	}
	for _, r := range l.refused {
		if r.out.Action == policy.Defer {
			return r.v, true
		}
	}
	if len(l.refused) > 0 && accepted == 0 {
		return l.refused[0].v, true
	}
	return policy.Verdict{}, false
}

// dropped are the recipients to remove from a message that goes on
// (EOMOutcome.DelRcpts): those refused at RCPT.
func (l *localMail) dropped(a policy.Action) []string {
	if l == nil || (a != policy.Accept && a != policy.Quarantine) {
		return nil
	}
	var rcpts []string
	for _, r := range l.refused {
		rcpts = append(rcpts, r.rcpt)
	}
	return rcpts
}

// effective is the action a verdict takes for this mail:
// local_submission.deferrals: hold turns a deferral that is a decision (not
// an error) into a hold, since a deferred local message would be retried by
// pickup at every scan.
func (l *localMail) effective(eff policy.Action, v policy.Verdict, st *State) policy.Action {
	if l != nil && eff == policy.Defer && v.Errors == 0 && st.Config.LocalSubmission.Deferrals == config.LocalDeferralsHold {
		return policy.Quarantine
	}
	return eff
}
