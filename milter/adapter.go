package milter

import (
	"context"
	"net/netip"
	"sort"
	"strings"

	gm "github.com/d--j/go-milter"

	"github.com/aupguard/aupguard/internal/engine/customer"
	"github.com/aupguard/aupguard/internal/engine/gateway"
	"github.com/aupguard/aupguard/internal/engine/policy"
	"github.com/aupguard/aupguard/internal/observability/panics"
)

// adapter is one MTA connection: it implements the library's Milter
// interface on top of a gateway.Session. Every method recovers panics and
// returns a nil error, so the connection is never dropped by us.
type adapter struct {
	s    *Server
	sess *gateway.Session
}

func (s *Server) newMilter() gm.Milter {
	// This runs in the library's connection goroutine, outside any handler:
	// a panic here is recovered by the library (WithPanicHandler) and ends
	// this connection only. Count the connection once nothing can fail.
	if s.opts.Sessions != nil {
		s.opts.Sessions.SessionOpened()
	}
	a := &adapter{s: s, sess: s.engine.NewSession()}
	s.active.Add(1)
	return a
}

// tempfail is what a panic becomes: the message is deferred, the MTA
// connection stays.
var tempfail = policy.ReplyTempFailure

func (a *adapter) guard(stage string, resp **gm.Response) {
	if p := recover(); p != nil {
		a.s.opts.Panics.Recovered(panics.WhereHandler, stage, p)
		*resp = reply(tempfail)
	}
}

func (a *adapter) NewConnection(gm.Modifier) error { return nil }

func (a *adapter) Connect(host string, family string, port uint16, addr string, m gm.Modifier) (resp *gm.Response, err error) {
	defer a.guard("connect", &resp)
	ip, _ := netip.ParseAddr(addr)
	if v := m.Get(gm.MacroClientAddr); v != "" {
		if x, err := netip.ParseAddr(strings.Trim(v, "[]")); err == nil {
			ip = x
		}
	}
	a.sess.Connect(host, ip)
	raw, _ := netip.ParseAddr(addr)
	a.sess.SetLocalSubmission(customer.IsLocalSubmission(host, port, raw))
	a.sess.SetDaemon(m.Get(gm.MacroDaemonName))
	return gm.RespContinue, nil
}

func (a *adapter) Helo(name string, m gm.Modifier) (resp *gm.Response, err error) {
	defer a.guard("helo", &resp)
	a.sess.Helo(name)
	return gm.RespContinue, nil
}

func (a *adapter) MailFrom(from string, esmtpArgs string, m gm.Modifier) (resp *gm.Response, err error) {
	defer a.guard("mail", &resp)
	a.sess.SetQueueID(m.Get(gm.MacroQueueId))
	out := a.sess.Mail(context.Background(), from, esmtpArgs, m.Get(gm.MacroAuthAuthen))
	return outcome(out), nil
}

func (a *adapter) RcptTo(rcptTo string, esmtpArgs string, m gm.Modifier) (resp *gm.Response, err error) {
	defer a.guard("rcpt", &resp)
	// A custom reply at RCPT refuses this recipient only; the transaction
	// goes on for the others (milter protocol SMFIR_REPLYCODE at SMFIC_RCPT).
	a.sess.SetQueueID(m.Get(gm.MacroQueueId))
	return outcome(a.sess.Rcpt(context.Background(), rcptTo, esmtpArgs)), nil
}

func (a *adapter) Data(gm.Modifier) (*gm.Response, error) { return gm.RespContinue, nil }

func (a *adapter) Header(name string, value string, m gm.Modifier) (resp *gm.Response, err error) {
	defer a.guard("header", &resp)
	a.sess.Header(name, canonicalFolding(value))
	return gm.RespContinue, nil
}

func (a *adapter) Headers(m gm.Modifier) (resp *gm.Response, err error) {
	defer a.guard("eoh", &resp)
	a.sess.EndOfHeaders()
	return gm.RespContinue, nil
}

func (a *adapter) BodyChunk(chunk []byte, m gm.Modifier) (resp *gm.Response, err error) {
	defer a.guard("body", &resp)
	a.sess.Body(chunk)
	return gm.RespContinue, nil
}

func (a *adapter) EndOfMessage(m gm.Modifier) (resp *gm.Response, err error) {
	defer a.guard("eom", &resp)
	out := a.sess.EndOfMessage(context.Background(), m.Get(gm.MacroQueueId))
	if out.Action == policy.Accept || out.Action == policy.Quarantine {
		// Deletions first, highest index first, so that each index still
		// names the field as received (an empty value deletes the field).
		rm := append([]policy.RemovedHeader(nil), out.RemoveHeaders...)
		sort.SliceStable(rm, func(i, j int) bool { return rm[i].Index > rm[j].Index })
		for _, h := range rm {
			if err := m.ChangeHeader(h.Index, strings.TrimRight(h.Name, " \t"), ""); err != nil {
				a.s.log.Error("removing header failed", "header", h.Name, "err", err)
			}
		}
		// Prepend in reverse so the added headers end up on top, in order.
		for i := len(out.AddHeaders) - 1; i >= 0; i-- {
			h := out.AddHeaders[i]
			if err := m.InsertHeader(0, h.Name, fieldValue(h.Value)); err != nil {
				a.s.log.Error("adding header failed", "header", h.Name, "err", err)
			}
		}
		for _, r := range out.DelRcpts {
			if err := m.DeleteRecipient(r); err != nil {
				a.s.log.Error("removing recipient failed", "err", err)
			}
		}
		if out.Hold != "" {
			if err := m.Quarantine(out.Hold); err != nil {
				a.s.log.Error("quarantine failed", "err", err)
			}
		}
		return gm.RespAccept, nil
	}
	return outcome(out.Outcome), nil
}

func (a *adapter) Abort(gm.Modifier) error {
	func() {
		defer func() {
			if p := recover(); p != nil {
				a.s.opts.Panics.Recovered(panics.WhereHandler, "abort", p)
			}
		}()
		a.sess.Abort(context.Background())
	}()
	return nil
}

func (a *adapter) Unknown(string, gm.Modifier) (*gm.Response, error) { return gm.RespContinue, nil }

func (a *adapter) Cleanup(gm.Modifier) {
	// The connection count is kept right even when closing the session
	// panics.
	defer func() {
		a.s.active.Add(-1)
		if a.s.opts.Sessions != nil {
			a.s.opts.Sessions.SessionClosed()
		}
	}()
	defer func() {
		if p := recover(); p != nil {
			a.s.opts.Panics.Recovered(panics.WhereHandler, "close", p)
		}
	}()
	a.sess.Close()
}

// outcome maps a gateway answer at MAIL or RCPT to a milter response.
// Accept is "continue": the MTA must still send us the rest of the message.
func outcome(o gateway.Outcome) *gm.Response {
	switch o.Action {
	case policy.Defer, policy.Reject:
		return reply(o.Reply)
	}
	return gm.RespContinue
}

// reply builds a custom SMTP reply. The reply was built by policy's
// constructors, so its code and enhanced code are of the same class.
func reply(r policy.Reply) *gm.Response {
	resp, err := gm.RejectWithCodeAndReason(uint16(r.Code()), r.Enhanced()+" "+r.Text())
	if err != nil {
		if r.Temporary() {
			return gm.RespTempFail
		}
		return gm.RespReject
	}
	return resp
}

// canonicalFolding makes the line ends inside a folded header value CRLF,
// whatever the MTA used (Postfix passes LF).
func canonicalFolding(v string) string {
	if !strings.ContainsAny(v, "\r\n") {
		return v
	}
	v = strings.ReplaceAll(v, "\r\n", "\n")
	return strings.ReplaceAll(v, "\n", "\r\n")
}

// fieldValue is a header value as the MTA is to write it after "Name:".
// Postfix writes exactly what the milter sends, so the gateway supplies the
// single space RFC 5322 §2.2 shows and every reader expects ("Name: value").
// Folding is sent as LF, which the MTA turns into its line ends: the
// library's header packets turn CR LF into LF as they are built
// (milterutil.AppendCrLfToLf, third_party/go-milter/PATCHES.md), so the
// value is not copied here to do it.
func fieldValue(v string) string {
	if v != "" && v[0] != ' ' && v[0] != '\t' {
		v = " " + v
	}
	return v
}
