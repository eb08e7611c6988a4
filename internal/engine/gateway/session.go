package gateway

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/aupguard/aupguard/internal/engine/policy"
	"github.com/aupguard/aupguard/internal/mailaddr"
)

// Outcome is the gateway's answer at one stage. Action is what is actually
// done (monitor mode already applied); Reply carries the reference id.
type Outcome struct {
	Action policy.Action
	Reply  policy.Reply
}

// EOMOutcome is the answer at end of message.
type EOMOutcome struct {
	Outcome
	// AddHeaders are headers to add to an accepted message, in order.
	AddHeaders []policy.Header
	// RemoveHeaders are received fields to delete from an accepted message
	// (a client-supplied Feedback-ID or stamp, which only the gateway writes).
	RemoveHeaders []policy.RemovedHeader
	// Hold is the quarantine reason when the message goes to the HOLD queue.
	Hold string
	// Verdict is the chain's verdict (for explain).
	Verdict policy.Verdict
	// DelRcpts are recipients to remove from an accepted message: those
	// refused permanently at RCPT in locally submitted mail, which Postfix
	// cannot refuse one by one (see Session.Rcpt).
	DelRcpts []string
}

var (
	// RFC 3463 §3.2: X.1.7 bad sender's mailbox address syntax.
	replyBadSender = policy.MustReply(553, "5.1.7", "Bad sender address syntax")
	// RFC 3463 §3.2: X.1.3 bad destination mailbox address syntax.
	replyBadRcpt = policy.MustReply(553, "5.1.3", "Bad recipient address syntax")
)

// Session is one MTA connection. Its methods are called in SMTP order by
// one goroutine (the milter adapter, explain or the benchmark).
type Session struct {
	e    *Engine
	conn policy.Conn

	// local is the local-submission special case (nil for SMTP clients).
	local     *localMail
	st        *State
	txn       *policy.Txn
	by        string
	dryRun    bool
	hold      string
	bodyW     []io.Writer
	bodyReady bool
	finished  bool
	// explainFor, when set, is the customer explain attributes the message
	// to, whatever the login and client (Mail skips identification).
	explainFor *policy.Customer
	// last is the verdict of the last stage run (explain reports it).
	last policy.Verdict
	// qid is the MTA's queue id as last told (SetQueueID).
	qid string
}

// SetQueueID records the MTA's queue id (Postfix macro "i") as soon as the
// MTA tells it: at MAIL and RCPT when Postfix opens the queue file at MAIL
// (smtpd_delay_open_until_valid_rcpt = no, configs/postfix/main.cf), so
// that decisions made at RCPT carry it too. Within a transaction an empty
// id changes nothing.
func (s *Session) SetQueueID(id string) {
	if s.txn != nil && !s.finished {
		if id != "" {
			s.txn.QueueID = id
		}
		return
	}
	// Before MAIL: the next transaction's id (never a stale one).
	s.qid = id
}

// NewSession starts a session for a new MTA connection.
func (e *Engine) NewSession() *Session { return &Session{e: e} }

// Connect records the SMTP client's address and name.
func (s *Session) Connect(hostname string, addr netip.Addr) {
	s.conn.ClientName = hostname
	s.conn.ClientAddr = addr.Unmap()
}

// Helo records the HELO/EHLO name.
func (s *Session) Helo(name string) { s.conn.Helo = name }

// SetLocalSubmission marks the connection as carrying mail submitted on
// the MTA host itself (customer.IsLocalSubmission): its mail is attributed
// by customer.LocalIdentifier instead of login and client address.
func (s *Session) SetLocalSubmission(local bool) {
	s.local, s.conn.Local = nil, local
	if local {
		s.local = &localMail{}
	}
}

// SetDaemon records the MTA daemon name ({daemon_name}).
func (s *Session) SetDaemon(name string) { s.conn.DaemonName = name }

// Mail handles MAIL FROM: it identifies the customer (SASL login first, then
// client address) and runs the MAIL stage of the chain.
func (s *Session) Mail(ctx context.Context, from, esmtpArgs, login string) Outcome {
	start := s.e.clock.Now()
	defer s.e.observeStage(StageMail, start)
	s.endTxn(ctx, false)
	s.local.reset()
	st := s.e.state.Load()
	if st == nil {
		return Outcome{Action: policy.Defer, Reply: policy.ReplyTempFailure}
	}
	s.conn.AuthLogin = login
	ref := newRef()
	sender, err := mailaddr.Parse(from)
	if err != nil {
		d := s.decision(st, nil, StageMail, ref, start)
		d.SenderDomain = sender.Domain
		return s.refuse(d, policy.Reject, replyBadSender, "sender_syntax", "envelope", err.Error())
	}
	if s.local != nil {
		// Mail submitted on the MTA host: attributed by its sender.
		id := s.local.identify(st, sender)
		s.conn.LocalLogin = id.login
		if id.cust == nil {
			d := s.decision(st, nil, StageMail, ref, start)
			d.SenderDomain = sender.Domain
			return s.refuse(d, id.action, id.reply, "unattributed_local", "identity", id.detail)
		}
		return s.startTxn(ctx, st, id.cust, id.by, sender, esmtpArgs, ref, start)
	}
	cust, by := st.Dir.Identify(login, s.conn.ClientAddr)
	if s.explainFor != nil {
		cust, by = s.explainFor, "explain"
	}
	if cust == nil {
		// No open relay: mail from a client that is no customer is refused
		// (RFC 5321 §3.6.2 lets a server refuse relaying).
		d := s.decision(st, nil, StageMail, ref, start)
		d.SenderDomain = sender.Domain
		if envid := envelopeID(esmtpArgs); envid != "" && st.Deps.Secret.VerifyProviderStamp(from, envid, s.e.clock.Now()) {
			// The gateway's own mail (reports, notifications): stamped
			// with its secret (secrets.ProviderStamp), not judged.
			d.Action, d.Effective, d.Check, d.Finding = policy.Accept, policy.Accept, "identity", "provider_mail"
			d.Detail = "stamped with the gateway's secret"
			s.emit(d)
			return Outcome{Action: policy.Accept}
		}
		if st.unidentifiedAction == policy.Accept {
			d.Action, d.Effective, d.Check, d.Finding = policy.Accept, policy.Accept, "identity", "unidentified_client"
			s.emit(d)
			return Outcome{Action: policy.Accept}
		}
		detail := "no customer for client " + s.conn.ClientAddr.String()
		if login != "" {
			detail = "no customer for login " + login + " or client " + s.conn.ClientAddr.String()
		}
		return s.refuse(d, st.unidentifiedAction, st.unidentifiedReply, "unidentified_client", "identity", detail)
	}
	return s.startTxn(ctx, st, cust, by, sender, esmtpArgs, ref, start)
}

// startTxn starts the transaction of an identified customer and runs the
// MAIL stage of the chain.
func (s *Session) startTxn(ctx context.Context, st *State, cust *policy.Customer, by string, sender mailaddr.Address, esmtpArgs, ref string, start time.Time) Outcome {
	s.st, s.by, s.finished, s.hold, s.bodyReady, s.bodyW = st, by, false, "", false, nil
	s.txn = policy.NewTxn(&s.conn, cust, ref, start)
	s.txn.DryRun = s.dryRun
	s.txn.QueueID, s.qid = s.qid, ""
	s.txn.MailFrom = sender
	s.txn.MailArgs = parseArgs(esmtpArgs)

	cctx, cancel := s.e.stageContext(ctx, st)
	v := st.Chain.Mail(cctx, s.txn)
	cancel()
	return s.stageOutcome(ctx, StageMail, v, nil, start)
}

// Rcpt handles one RCPT TO. A refusal affects this recipient only.
func (s *Session) Rcpt(ctx context.Context, to, esmtpArgs string) Outcome {
	start := s.e.clock.Now()
	defer s.e.observeStage(StageRcpt, start)
	if s.txn == nil || s.finished {
		return Outcome{Action: policy.Accept}
	}
	addr, err := mailaddr.Parse(to)
	r := &policy.Rcpt{Addr: addr, Args: parseArgs(esmtpArgs)}
	if err != nil || addr.Null {
		d := s.decision(s.st, s.txn, StageRcpt, s.txn.Ref, start)
		d.Rcpts = 1
		d.Action, d.Effective, d.Check, d.Finding = policy.Reject, policy.Reject, "envelope", "rcpt_syntax"
		d.Detail = "unparsable recipient"
		reply := replyBadRcpt.WithRef(s.txn.Ref)
		d.Code, d.Enhanced = reply.Code(), reply.Enhanced()
		s.emit(d)
		v := policy.Verdict{Action: policy.Reject, Reply: replyBadRcpt, Check: "envelope", Finding: "rcpt_syntax", Detail: "unparsable recipient"}
		out := Outcome{Action: policy.Reject, Reply: reply}
		if kept, ok := s.local.keepRefusal(to, v, out); ok {
			return kept // local mail: settled at end of message
		}
		return out
	}
	cctx, cancel := s.e.stageContext(ctx, s.st)
	v := s.st.Chain.Rcpt(cctx, s.txn, r)
	cancel()
	out := s.stageOutcome(ctx, StageRcpt, v, r, start)
	if out.Action == policy.Accept {
		s.txn.Rcpts = append(s.txn.Rcpts, r)
	} else if kept, ok := s.local.keepRefusal(to, v, out); ok {
		return kept // local mail: settled at end of message
	}
	return out
}

// Header records one header field. value is raw, as the MTA sent it.
func (s *Session) Header(name, value string) {
	if s.txn == nil || s.finished {
		return
	}
	s.txn.Headers = append(s.txn.Headers, policy.Header{Name: name, Value: value})
	s.txn.HeaderBytes += int64(len(name) + len(value) + 3)
}

// EndOfHeaders is called after the last header; the body follows.
func (s *Session) EndOfHeaders() {
	if s.txn == nil || s.finished || s.bodyReady {
		return
	}
	s.bodyReady = true
	s.bodyW = s.st.Chain.BodyWriters(s.txn)
}

// Body passes one body chunk to the checks that asked for the body.
func (s *Session) Body(chunk []byte) {
	if s.txn == nil || s.finished {
		return
	}
	if !s.bodyReady {
		s.EndOfHeaders()
	}
	s.txn.BodySize += int64(len(chunk))
	for i, w := range s.bodyW {
		if w == nil {
			continue
		}
		if _, err := w.Write(chunk); err != nil {
			s.bodyW[i] = nil // a writer that failed gets no more; its check sees the error at EOM
		}
	}
}

// EndOfMessage runs the end-of-message stage and ends the transaction.
func (s *Session) EndOfMessage(ctx context.Context, queueID string) EOMOutcome {
	start := s.e.clock.Now()
	defer s.e.observeStage(StageEOM, start)
	if s.txn == nil || s.finished {
		return EOMOutcome{Outcome: Outcome{Action: policy.Accept}}
	}
	if queueID != "" {
		s.txn.QueueID = queueID
	}
	if !s.bodyReady {
		s.EndOfHeaders()
	}
	for _, w := range s.bodyW {
		if c, ok := w.(io.Closer); ok && w != nil {
			_ = c.Close()
		}
	}
	t, hold := s.txn, s.hold
	if v, ok := s.local.settle(len(t.Rcpts)); ok {
		s.local.reset()
		out := EOMOutcome{Verdict: v}
		out.Outcome = s.stageOutcome(ctx, StageEOM, v, nil, start)
		return out
	}
	cctx, cancel := s.e.stageContext(ctx, s.st)
	v := s.st.Chain.EOM(cctx, t)
	cancel()
	out := EOMOutcome{Verdict: v}
	out.Outcome = s.stageOutcome(ctx, StageEOM, v, nil, start)
	if out.Action == policy.Accept || out.Action == policy.Quarantine {
		out.AddHeaders = t.AddedHeaders()
		out.RemoveHeaders = t.RemovedHeaders()
		out.Hold = hold
		if out.Action == policy.Quarantine && out.Hold == "" {
			out.Hold = v.Check + "/" + v.Finding
		}
		if out.Hold != "" {
			out.Action = policy.Quarantine
			out.Hold += " (ref " + t.Ref + ")"
		}
	}
	out.DelRcpts = s.local.dropped(out.Action)
	s.local.reset()
	return out
}

// Abort ends the transaction without delivery (RSET, QUIT, lost client).
func (s *Session) Abort(ctx context.Context) { s.endTxn(ctx, false) }

// Close ends the session.
func (s *Session) Close() { s.endTxn(context.Background(), false) }

// endTxn tells the checks how the transaction ended and unpins the State.
func (s *Session) endTxn(ctx context.Context, accepted bool) {
	if s.txn == nil {
		return
	}
	if !s.finished {
		s.finished = true
		fctx, cancel := s.e.stageContext(context.WithoutCancel(ctx), s.st)
		s.st.Chain.Finish(fctx, s.txn, accepted && !s.dryRun)
		cancel()
	}
	s.txn, s.st, s.bodyW = nil, nil, nil
}

// stageOutcome turns a stage verdict into the answer, logs and publishes
// the decision, and ends the transaction when it is over.
func (s *Session) stageOutcome(ctx context.Context, stage string, v policy.Verdict, r *policy.Rcpt, start time.Time) Outcome {
	t := s.txn
	s.last = v
	eff := s.local.effective(v.Effective(), v, s.st)
	if eff == policy.Quarantine && stage != StageEOM {
		// Holding is only possible at end of message (Postfix HOLD queue):
		// remember it and go on.
		if s.hold == "" {
			s.hold = v.Check + "/" + v.Finding
		}
		eff = policy.Accept
	}
	held := stage == StageEOM && eff == policy.Accept && s.hold != ""
	if held {
		// Held by an earlier stage's quarantine (a stopped sender at
		// MAIL): the message's decision says so, as Postfix will do.
		eff = policy.Quarantine
	}
	out := Outcome{Action: eff}
	if eff == policy.Defer || eff == policy.Reject {
		out.Reply = v.Reply.WithRef(t.Ref)
	}
	// One decision per refusal, per would-be refusal in monitor mode, and
	// per message at end of message.
	if stage == StageEOM || v.Action != policy.Accept || v.Errors > 0 {
		d := s.decision(s.st, t, stage, t.Ref, start)
		d.Action, d.Effective = v.Action, eff
		d.Check, d.Finding, d.Detail, d.Results = v.Check, v.Finding, v.Detail, v.Results
		if held {
			d.Action = policy.Quarantine
			d.Check, d.Finding, _ = strings.Cut(s.hold, "/")
			d.Detail = "held since " + s.hold
		}
		if v.Action == policy.Defer || v.Action == policy.Reject {
			rep := v.Reply.WithRef(t.Ref)
			d.Code, d.Enhanced = rep.Code(), rep.Enhanced()
		}
		if r != nil {
			d.Rcpts = 1
			d.RcptHashes, d.RcptPlain = s.rcptIDs([]mailaddr.Address{r.Addr})
		}
		s.emit(d)
	}
	switch {
	case stage == StageEOM:
		s.endTxn(ctx, eff == policy.Accept || eff == policy.Quarantine)
	case stage == StageMail && (eff == policy.Defer || eff == policy.Reject):
		s.endTxn(ctx, false)
	}
	return out
}

// refuse answers and records a refusal made before any check ran.
func (s *Session) refuse(d *Decision, a policy.Action, reply policy.Reply, finding, check, detail string) Outcome {
	reply = reply.WithRef(d.Ref)
	d.Action, d.Effective, d.Check, d.Finding, d.Detail = a, a, check, finding, detail
	d.Code, d.Enhanced = reply.Code(), reply.Enhanced()
	s.emit(d)
	return Outcome{Action: a, Reply: reply}
}

func (s *Session) decision(st *State, t *policy.Txn, stage, ref string, start time.Time) *Decision {
	d := &Decision{Time: start, Stage: stage, Ref: ref, Client: s.conn.ClientAddr.String(), Mode: policy.Enforce.String()}
	if t != nil {
		d.QueueID = t.QueueID
		d.Customer = t.Customer.ID
		d.By = s.by
		d.Login = t.Conn.Login()
		d.Mode = t.Customer.Mode.String()
		d.SenderDomain = t.MailFrom.Domain
		d.Size = t.Size()
		if stage == StageEOM {
			d.Rcpts = len(t.Rcpts)
			d.RcptHashes, d.RcptPlain = s.rcptIDs(t.RcptAddrs())
		}
	}
	return d
}

func (s *Session) rcptIDs(addrs []mailaddr.Address) (hashes, plain []string) {
	st := s.st
	if st == nil {
		st = s.e.state.Load()
	}
	for _, a := range addrs {
		// One keyed hash of one canonical form for a recipient everywhere:
		// the decision log, the findings, the events and `aupguard optout
		// check` all show optout's hash (optout.Settings.Hash).
		hashes = append(hashes, st.Deps.Secret.Hash("optout", a.Canonical(st.rcptCaseSensitive, st.rcptFold)))
		if st.Config.Log.PlainRecipients {
			plain = append(plain, a.Canonical(false, false))
		}
	}
	return hashes, plain
}

// emit writes the decision's one log line and publishes it.
func (s *Session) emit(d *Decision) {
	d.Duration = s.e.clock.Now().Sub(d.Time)
	if s.dryRun {
		s.e.observe(d)
		return
	}
	attrs := []slog.Attr{
		slog.String("stage", d.Stage),
		slog.String("queue_id", d.QueueID),
		slog.String("ref", d.Ref),
		slog.String("customer", orDash(d.Customer)),
		slog.String("client", d.Client),
		slog.String("from_domain", d.SenderDomain),
		slog.Int("rcpts", d.Rcpts),
		slog.Int64("size", d.Size),
		slog.String("action", d.Action.String()),
		slog.String("effective", d.Effective.String()),
		slog.String("check", orDash(d.Check)),
		slog.String("finding", orDash(d.Finding)),
		slog.Int("code", d.Code),
		slog.String("enhanced", d.Enhanced),
		slog.String("mode", d.Mode),
	}
	if d.By != "" {
		attrs = append(attrs, slog.String("by", d.By))
	}
	if d.Login != "" {
		attrs = append(attrs, slog.String("login", d.Login))
	}
	if d.Stage == StageRcpt && len(d.RcptHashes) > 0 {
		attrs = append(attrs, slog.String("rcpt_hash", d.RcptHashes[0]))
	}
	if len(d.RcptPlain) > 0 {
		attrs = append(attrs, slog.String("rcpt", strings.Join(d.RcptPlain, ",")))
	}
	if d.Detail != "" {
		attrs = append(attrs, slog.String("detail", d.Detail))
	}
	if len(d.Results) > 0 {
		fs := make([]string, len(d.Results))
		for i, r := range d.Results {
			fs[i] = r.Check + "/" + r.Finding.Name + "=" + r.Action.String()
		}
		attrs = append(attrs, slog.String("findings", strings.Join(fs, " ")))
	}
	attrs = append(attrs, slog.Float64("ms", float64(d.Duration.Microseconds())/1000))
	level := slog.LevelInfo
	if d.Effective == policy.Defer || d.Effective == policy.Reject {
		level = slog.LevelWarn
	}
	s.e.log.LogAttrs(context.Background(), level, "decision", attrs...)
	s.e.observe(d)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// envelopeID is the ENVID parameter of MAIL FROM (RFC 3461 §4.4), or "".
// Only unidentified clients' mail gets here, so it costs customers nothing.
func envelopeID(args string) string {
	for _, f := range strings.Fields(args) {
		if k, v, ok := strings.Cut(f, "="); ok && strings.EqualFold(k, "ENVID") {
			return v
		}
	}
	return ""
}

// parseArgs splits ESMTP parameters ("SIZE=123 BODY=8BITMIME") into a map
// with upper-case keys (RFC 5321 §4.1.2: keywords are case-insensitive).
func parseArgs(s string) map[string]string {
	if s == "" {
		return nil
	}
	m := map[string]string{}
	for _, f := range strings.Fields(s) {
		k, v, _ := strings.Cut(f, "=")
		m[strings.ToUpper(k)] = v
	}
	return m
}
