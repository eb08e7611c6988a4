package policy

import (
	"context"
	"errors"
	"io"

	"github.com/aupguard/aupguard/internal/store/batch"
)

// Finding is what a check found. The check names it and suggests an action
// and reply; the configured action for the check (and the customer's
// override) decides what is done with it.
type Finding struct {
	// Name is stable: it is used in logs, explain, metrics and reports
	// (e.g. "from_domain_not_owned").
	Name string
	// Detail explains the finding for the log and the postmaster; it never
	// reaches the client and must not hold recipient addresses in plain text.
	Detail string
	// Action is the check's default action for this finding.
	Action Action
	// Reply is the reply that goes with Action; the zero Reply means the
	// generic reply for the action.
	Reply Reply
	// Attrs carries machine-readable facts for reports (limit name, domain...).
	Attrs map[string]string
}

// Check is one policy check. A check implements one or more of the stage
// interfaces below; the chain calls it at those stages only.
type Check interface {
	// Name is the check's stable name, as used in the config's chain list.
	Name() string
}

// MailChecker decides at MAIL FROM, for the whole transaction.
type MailChecker interface {
	Check
	Mail(ctx context.Context, t *Txn) ([]Finding, error)
}

// RcptChecker decides at RCPT TO, for one recipient only.
type RcptChecker interface {
	Check
	Rcpt(ctx context.Context, t *Txn, r *Rcpt) ([]Finding, error)
}

// BodyChecker sees the message body as it streams. Body is called once per
// message, after the last header; it returns a writer that receives the body
// chunks as they arrive (CRLF line endings), or nil when the check does not
// need this message's body. No check may buffer the whole body. When the
// writer also implements io.Closer, Close is called once after the last
// chunk and before the EOM stage (a pipe to a verifier needs its EOF).
type BodyChecker interface {
	Check
	Body(t *Txn) io.Writer
}

// EOMChecker decides at end of message, when headers and body are known.
type EOMChecker interface {
	Check
	EOM(ctx context.Context, t *Txn) ([]Finding, error)
}

// EOMStarter starts a check's end-of-message work ahead of its turn: the
// chain calls StartEOM on every enabled EOMStarter when the stage begins,
// before any check decides and before the stage's store batch runs, so
// that slow work of its own (a scanner's verdict, DNS lookups) overlaps
// the checks before it in the chain, the store round trip and each other.
// StartEOM must not block; the check's EOM then waits for its own result
// and decides in chain order as always, so which reason wins does not
// depend on which work finished first. A check whose EOM is never called
// (an earlier check refused the message) ends its started work in Finish
// or when the stage's context ends.
type EOMStarter interface {
	EOMChecker
	StartEOM(ctx context.Context, t *Txn)
}

// Finisher is told how the transaction ended: accepted is true when the
// message was accepted (or quarantined) for delivery, false when it was
// refused, deferred or aborted. Counters commit or release here.
type Finisher interface {
	Check
	Finish(ctx context.Context, t *Txn, accepted bool)
}

// ReplyError is an error that knows the temporary reply it should become
// when the check's on_error is defer (e.g. a DNS failure: 451 4.4.3).
type ReplyError interface {
	error
	Reply() Reply
}

type replyError struct {
	err   error
	reply Reply
}

func (e *replyError) Error() string { return e.err.Error() }
func (e *replyError) Unwrap() error { return e.err }
func (e *replyError) Reply() Reply  { return e.reply }

// ErrorWithReply wraps err so that, when it becomes a defer, the client sees reply.
func ErrorWithReply(err error, reply Reply) error {
	if err == nil {
		return nil
	}
	return &replyError{err: err, reply: reply}
}

// errorReply returns the reply an error asks for, if any.
func errorReply(err error) (Reply, bool) {
	var re ReplyError
	if errors.As(err, &re) {
		return re.Reply(), true
	}
	return Reply{}, false
}

// Batch is the store work of one stage of one transaction (package
// internal/store/batch). Every check that needs the store at a stage adds
// its part to the stage's batch in its Prepare method; the chain then runs
// the batch once (one store round trip) before the checks decide, and each
// check reads its own results in its stage method. The checks never see
// each other's parts. A check called without a chain (a nil batch) makes
// a batch of its own and runs it at once.
type Batch = batch.Batch

// MailPreparer adds a check's store work at MAIL FROM to the stage's batch.
type MailPreparer interface {
	Check
	PrepareMail(ctx context.Context, t *Txn, b *Batch)
}

// RcptPreparer adds a check's store work at RCPT TO to the stage's batch.
type RcptPreparer interface {
	Check
	PrepareRcpt(ctx context.Context, t *Txn, r *Rcpt, b *Batch)
}

// EOMPreparer adds a check's store work at end of message to the stage's
// batch.
type EOMPreparer interface {
	Check
	PrepareEOM(ctx context.Context, t *Txn, b *Batch)
}

// FinishPreparer adds a check's store work at the end of the transaction
// (giving back what a refused message reserved) to one batch, run once
// after every Finisher was told.
type FinishPreparer interface {
	Check
	PrepareFinish(ctx context.Context, t *Txn, accepted bool, b *Batch)
}
