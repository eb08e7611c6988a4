package auth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/aupguard/aupguard/internal/checks/authres"
	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/engine/policy"
	"github.com/aupguard/aupguard/internal/resolver"
)

// DKIMName is the DKIM verification check's name.
const DKIMName = "dkim"

// Findings of the dkim check, one per signature that does not pass.
const (
	// FindingDKIMFail: the signature does not verify (body changed, bad
	// signature, insecure l= tag): RFC 8601 §2.7.1 "fail".
	FindingDKIMFail = "dkim_fail"
	// FindingDKIMPermError: the signature cannot be verified (no key
	// published, malformed tags, rsa-sha1, key too weak): "permerror".
	FindingDKIMPermError = "dkim_permerror"
)

// RFC 7372 §3.1: X.7.20 no passing DKIM signature found.
var replyDKIMFail = policy.MustReply(550, "5.7.20", "DKIM signature of the message does not verify")

// DKIMCheck verifies the DKIM signatures a customer's message carries when
// it reaches the gateway, with go-msgauth's verifier. The message streams
// to the verifier through a pipe as its body arrives (headers first), so
// no message is ever held whole; the result is collected at end of message.
type DKIMCheck struct {
	res     resolver.Resolver
	max     int
	timeout time.Duration
}

// NewDKIM returns the dkim check. maxSigs bounds the signatures verified
// per message (RFC 6376 §6.1 lets a verifier limit them); timeout bounds
// each key lookup.
func NewDKIM(r resolver.Resolver, maxSigs int, timeout time.Duration) *DKIMCheck {
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	return &DKIMCheck{res: r, max: maxSigs, timeout: timeout}
}

// Name implements policy.Check.
func (c *DKIMCheck) Name() string { return DKIMName }

// verifyOf is the dkim check's verification in flight.
var verifyOf = policy.NewState[*verification]()

// verification is one message's verifier under way.
type verification struct {
	pw     *io.PipeWriter
	cancel context.CancelFunc
	done   chan struct{}
	vs     []*dkim.Verification
	err    error
}

// Write passes a body chunk to the verifier.
func (v *verification) Write(p []byte) (int, error) { return v.pw.Write(p) }

// Close ends the body.
func (v *verification) Close() error { return v.pw.Close() }

// Body starts the verifier when the message carries a signature.
func (c *DKIMCheck) Body(t *policy.Txn) io.Writer {
	r := get(t)
	r.DKIMRan = true
	var hdr strings.Builder
	n := 0
	for _, h := range t.Headers {
		if strings.EqualFold(strings.TrimSpace(h.Name), "DKIM-Signature") {
			n++
		}
		hdr.WriteString(h.Name)
		hdr.WriteByte(':')
		hdr.WriteString(crlfValue(h.Value))
		hdr.WriteString("\r\n")
	}
	if n == 0 {
		return nil
	}
	hdr.WriteString("\r\n")
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	v := &verification{pw: pw, cancel: cancel, done: make(chan struct{})}
	opts := &dkim.VerifyOptions{
		MaxVerifications: c.max,
		LookupTXT: func(name string) ([]string, error) {
			lctx, lcancel := clock.WithTimeout(ctx, c.timeout)
			defer lcancel()
			return c.res.LookupTXT(lctx, name)
		},
	}
	go func() {
		defer close(v.done)
		v.vs, v.err = dkim.VerifyWithOptions(io.MultiReader(strings.NewReader(hdr.String()), pr), opts)
		// The verifier may stop reading early (a signature that fails
		// before its body hash); the rest of the body must still be
		// consumed, or the writer would block.
		_, _ = io.Copy(io.Discard, pr)
	}()
	verifyOf.Set(t, v)
	return v
}

// crlfValue makes the folding of a raw header value CRLF, as the
// verifier's canonicalization expects, whatever the MTA passed (Postfix
// hands folded values to milters with bare LF).
func crlfValue(v string) string {
	if !strings.Contains(v, "\n") {
		return v
	}
	return strings.ReplaceAll(strings.ReplaceAll(v, "\r\n", "\n"), "\n", "\r\n")
}

// EOM collects the verification.
func (c *DKIMCheck) EOM(ctx context.Context, t *policy.Txn) ([]policy.Finding, error) {
	r := get(t)
	r.DKIMRan = true
	v, _ := verifyOf.Get(t)
	if v == nil {
		return nil, nil
	}
	verifyOf.Clear(t)
	_ = v.pw.Close()
	defer v.cancel()
	select {
	case <-v.done:
	case <-ctx.Done():
		v.cancel()
		_ = v.pw.CloseWithError(ctx.Err())
		return nil, policy.ErrorWithReply(fmt.Errorf("dkim verification did not finish: %v", ctx.Err()), policy.ReplyDirectoryFailure)
	}
	if v.err != nil && !errors.Is(v.err, dkim.ErrTooManySignatures) {
		return nil, fmt.Errorf("dkim verification: %v", v.err)
	}
	var out []policy.Finding
	temp := 0
	for _, vr := range v.vs {
		d := DKIMResult{Domain: normalize(vr.Domain), Result: "pass"}
		if d.Domain == "" {
			d.Domain = strings.ToLower(vr.Domain)
		}
		switch {
		case vr.Err == nil:
		case dkim.IsTempFail(vr.Err):
			d.Result, d.Err = "temperror", vr.Err.Error()
			temp++
		case dkim.IsPermFail(vr.Err):
			d.Result, d.Err = "permerror", vr.Err.Error()
		default:
			d.Result, d.Err = "fail", vr.Err.Error()
		}
		r.DKIM = append(r.DKIM, d)
	}
	if temp > 0 && !r.AnyDKIMPass() && r.Sign == nil && (r.SPF == nil || !r.SPF.Pass()) {
		// RFC 6376 §6.1.2: a key that cannot be retrieved for now is a
		// TEMPFAIL; the message may verify when it is tried again. It
		// matters only when nothing else authenticates the message.
		return nil, policy.ErrorWithReply(fmt.Errorf("dkim key lookup failed: %s", firstErr(r, "temperror")), policy.ReplyDirectoryFailure)
	}
	for _, d := range r.DKIM {
		if d.Result == "pass" || d.Result == "temperror" {
			continue
		}
		f := policy.Finding{Name: FindingDKIMFail, Action: policy.Accept, Reply: replyDKIMFail,
			Detail: fmt.Sprintf("DKIM signature d=%s %s: %s", d.Domain, d.Result, d.Err),
			Attrs:  map[string]string{"domain": d.Domain, "result": d.Result}}
		if d.Result == "permerror" {
			f.Name = FindingDKIMPermError
		}
		out = append(out, f)
	}
	return out, nil
}

// Finish stops a verifier the EOM stage did not collect (an aborted message).
func (c *DKIMCheck) Finish(_ context.Context, t *policy.Txn, _ bool) {
	if v, _ := verifyOf.Get(t); v != nil {
		v.cancel()
		_ = v.pw.CloseWithError(errors.New("transaction ended"))
		verifyOf.Clear(t)
	}
}

// firstErr describes the first signature with result.
func firstErr(r *authres.Results, result string) string {
	for _, d := range r.DKIM {
		if d.Result == result {
			return "d=" + d.Domain + ": " + d.Err
		}
	}
	return ""
}
