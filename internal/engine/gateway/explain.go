package gateway

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"

	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/engine/policy"
	"github.com/aupguard/aupguard/internal/mailaddr"
)

// ExplainInput is a message to run through the chain without an MTA.
type ExplainInput struct {
	// Customer is the customer id the message is attributed to.
	Customer string
	// MailFrom is the envelope sender; empty means the From header's
	// address ("<>" is the null sender).
	MailFrom string
	// Rcpts are the envelope recipients; none means the To/Cc addresses.
	Rcpts []string
	// Client and Helo describe the SMTP client (optional).
	Client netip.Addr
	Helo   string
	// Login is the SASL login (optional).
	Login string
	// Message is the whole message (headers, blank line, body).
	Message io.Reader
}

// ExplainCheck is one finding of one check at one stage.
type ExplainCheck struct {
	Name    string `json:"name"`
	Stage   string `json:"stage"`
	Finding string `json:"finding"`
	Action  string `json:"action"`
	Detail  string `json:"detail,omitempty"`
	Rcpt    string `json:"rcpt,omitempty"`
}

// ExplainResult is what the chain made of the message.
type ExplainResult struct {
	Customer string `json:"customer"`
	Mode     string `json:"mode"`
	// Action is the verdict (in monitor mode, what would have been done).
	Action    string `json:"action"`
	Effective string `json:"effective"`
	Stage     string `json:"stage"`
	Code      int    `json:"code,omitempty"`
	Enhanced  string `json:"enhanced,omitempty"`
	Text      string `json:"text,omitempty"`
	Check     string `json:"check,omitempty"`
	Finding   string `json:"finding,omitempty"`
	// Checks lists every finding, in chain order, stage by stage.
	Checks []ExplainCheck `json:"checks"`
	// Added are the headers the gateway would add.
	Added []policy.Header `json:"added,omitempty"`
	// RcptRefused lists recipients refused at RCPT, with their replies.
	RcptRefused map[string]string `json:"rcpt_refused,omitempty"`
}

// explainRecorder collects decisions of a dry run.
type explainRecorder struct{ ds []*Decision }

func (r *explainRecorder) Observe(d *Decision) { r.ds = append(r.ds, d) }

// Explain runs the whole chain of st on one message as if it came through
// the MTA, and reports every check's findings and the final verdict. It is
// a dry run: counters are reserved and then released, nothing is committed.
func Explain(ctx context.Context, st *State, in ExplainInput) (*ExplainResult, error) {
	cust, ok := st.Dir.ByID(in.Customer)
	if !ok {
		return nil, fmt.Errorf("unknown customer %q", in.Customer)
	}
	hdrs, body, err := ReadHeaders(in.Message)
	if err != nil {
		return nil, err
	}
	from := in.MailFrom
	if from == "" {
		from = firstAddress(headerValue(hdrs, "From"))
	}
	rcpts := in.Rcpts
	if len(rcpts) == 0 {
		for _, n := range []string{"To", "Cc"} {
			for _, a := range strings.Split(headerValue(hdrs, n), ",") {
				if x := firstAddress(a); x != "" {
					rcpts = append(rcpts, x)
				}
			}
		}
	}
	rec := &explainRecorder{}
	e := &Engine{clock: clock.System{}, observers: []Observer{rec}}
	if st.Deps != nil && st.Deps.Clock != nil {
		e.clock = st.Deps.Clock
	}
	e.state.Store(st)
	s := e.NewSession()
	s.dryRun = true
	client := in.Client
	if !client.IsValid() {
		client = netip.MustParseAddr("127.0.0.1")
	}
	s.Connect("explain", client)
	s.Helo(in.Helo)
	res := &ExplainResult{Customer: cust.ID, Mode: cust.Mode.String(), RcptRefused: map[string]string{}}
	// The session's own MAIL path, attributed to the asked customer
	// whatever its logins and networks, as a dry run (Txn.DryRun).
	s.explainFor = cust
	if _, err := mailaddr.Parse(from); err != nil {
		return nil, fmt.Errorf("envelope sender %q: %v", from, err)
	}
	mailOut := s.Mail(ctx, from, "", in.Login)
	v := s.last
	addChecks(res, StageMail, v, "")
	final := func(stage string, o Outcome, v policy.Verdict) *ExplainResult {
		res.Stage, res.Action, res.Effective = stage, v.Action.String(), o.Action.String()
		res.Check, res.Finding = v.Check, v.Finding
		rep := v.Reply.WithRef("")
		if v.Action == policy.Defer || v.Action == policy.Reject {
			res.Code, res.Enhanced, res.Text = rep.Code(), rep.Enhanced(), rep.Text()
		}
		return res
	}
	if mailOut.Action == policy.Defer || mailOut.Action == policy.Reject || (v.Monitor && v.Action.Decisive() && v.Action != policy.Quarantine) {
		s.endTxn(ctx, false)
		return final(StageMail, mailOut, v), nil
	}
	for _, rc := range rcpts {
		before := len(rec.ds)
		o := s.Rcpt(ctx, rc, "")
		if len(rec.ds) > before {
			d := rec.ds[len(rec.ds)-1]
			for _, r := range d.Results {
				res.Checks = append(res.Checks, ExplainCheck{Name: r.Check, Stage: StageRcpt, Finding: r.Finding.Name, Action: r.Action.String(), Detail: r.Finding.Detail, Rcpt: rc})
			}
			if o.Action != policy.Accept || d.Action.Decisive() {
				res.RcptRefused[rc] = policy.ReplyFor(d.Action, policy.Reply{}).String()
				if o.Action != policy.Accept {
					res.RcptRefused[rc] = o.Reply.String()
				}
			}
		}
	}
	if s.txn == nil || len(s.txn.Rcpts) == 0 {
		s.endTxn(ctx, false)
		res.Stage, res.Action, res.Effective = StageRcpt, "reject", "reject"
		if len(res.RcptRefused) == 0 {
			return nil, errors.New("no recipients: give -rcpt or To/Cc headers")
		}
		return res, nil
	}
	for _, h := range hdrs {
		s.Header(h.Name, h.Value)
	}
	s.EndOfHeaders()
	buf := make([]byte, 64*1024)
	for {
		n, err := body.Read(buf)
		if n > 0 {
			s.Body(crlf(buf[:n]))
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			s.endTxn(ctx, false)
			return nil, err
		}
	}
	out := s.EndOfMessage(ctx, "")
	addChecks(res, StageEOM, out.Verdict, "")
	res.Added = out.AddHeaders
	return final(StageEOM, out.Outcome, out.Verdict), nil
}

func addChecks(res *ExplainResult, stage string, v policy.Verdict, rcpt string) {
	for _, r := range v.Results {
		res.Checks = append(res.Checks, ExplainCheck{Name: r.Check, Stage: stage, Finding: r.Finding.Name, Action: r.Action.String(), Detail: r.Finding.Detail, Rcpt: rcpt})
	}
}

// crlf turns bare LF line ends into CRLF, as an MTA hands the body to a
// milter; a chunk ending in CR is left for the next one to complete.
func crlf(p []byte) []byte {
	if !bytes.Contains(p, []byte("\n")) {
		return p
	}
	out := make([]byte, 0, len(p)+len(p)/32)
	for i, c := range p {
		if c == '\n' && (i == 0 || p[i-1] != '\r') {
			out = append(out, '\r')
		}
		out = append(out, c)
	}
	return out
}

// ReadHeaders reads a message's header section as an MTA passes it to a
// milter: each field's name and raw value (text after the colon, leading
// white space kept, continuation lines joined with CRLF). The returned
// reader yields the body.
func ReadHeaders(r io.Reader) ([]policy.Header, io.Reader, error) {
	br := bufio.NewReaderSize(r, 64*1024)
	var hdrs []policy.Header
	for {
		line, err := br.ReadString('\n')
		if err != nil && err != io.EOF {
			return nil, nil, err
		}
		trimmed := strings.TrimRight(line, "\r\n")
		if trimmed == "" {
			break
		}
		if (trimmed[0] == ' ' || trimmed[0] == '\t') && len(hdrs) > 0 {
			hdrs[len(hdrs)-1].Value += "\r\n" + trimmed
		} else if name, value, ok := strings.Cut(trimmed, ":"); ok {
			hdrs = append(hdrs, policy.Header{Name: name, Value: value})
		} else {
			// Not a header: RFC 5322 §2.2 header fields need a colon. Pass it
			// on as a nameless field so the syntax checks see it.
			hdrs = append(hdrs, policy.Header{Name: trimmed, Value: ""})
		}
		if err == io.EOF {
			break
		}
	}
	return hdrs, br, nil
}

func headerValue(hdrs []policy.Header, name string) string {
	for _, h := range hdrs {
		if strings.EqualFold(h.Name, name) {
			return h.Value
		}
	}
	return ""
}

// firstAddress pulls the address out of "Name <addr>" or a bare addr.
func firstAddress(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '<'); i >= 0 {
		if j := strings.IndexByte(s[i:], '>'); j > 0 {
			return s[i+1 : i+j]
		}
	}
	if strings.Contains(s, "@") && !strings.ContainsAny(s, " \t\"") {
		return s
	}
	return ""
}
