package auth

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/emersion/go-msgauth/dmarc"

	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/engine/policy"
	"github.com/aupguard/aupguard/internal/resolver"
)

// DMARCName is the DMARC check's name.
const DMARCName = "dmarc"

// Findings of the dmarc check. Each carries the attributes domain (the
// From domain), policy, spf and dkim (the authentication results).
const (
	// FindingDMARCReject: the From domain publishes p=reject and neither
	// SPF nor DKIM passes aligned. Receivers will refuse the message.
	FindingDMARCReject = "dmarc_reject"
	// FindingDMARCQuarantine: p=quarantine and no aligned pass. Receivers
	// will file the message as spam.
	FindingDMARCQuarantine = "dmarc_quarantine"
	// FindingDMARCUnaligned: p=none and no aligned pass.
	FindingDMARCUnaligned = "dmarc_unaligned"
	// FindingDMARCNoRecord: the From domain has no (valid) DMARC record
	// and no aligned pass. Large receivers require a record of bulk senders.
	FindingDMARCNoRecord = "dmarc_no_record"
)

// DMARCCheck decides on DMARC at end of message (RFC 7489 §6.6): the From
// domain's policy, found with go-msgauth/dmarc through the gateway's
// resolver, with the organizational-domain fallback of §6.6.3, against the
// aligned results of the spf check, the dkim check and the gateway's own
// signature.
type DMARCCheck struct {
	res     resolver.Resolver
	timeout time.Duration
	// require says, per customer id, whether unaligned mail is refused
	// when the domain has no record or p=none; def is for the others.
	require map[string]bool
	def     bool
}

// NewDMARC returns the dmarc check. A customer's own require_alignment
// comes from its settings (CustomerSettings) or else from require, by
// customer id; def is the provider-wide one.
func NewDMARC(r resolver.Resolver, timeout time.Duration, require map[string]bool, def bool) *DMARCCheck {
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	return &DMARCCheck{res: r, timeout: timeout, require: require, def: def}
}

// Name implements policy.Check.
func (c *DMARCCheck) Name() string { return DMARCName }

// Record is a DMARC record as it applies to one From domain.
type Record struct {
	// Domain is where the record was found.
	Domain string
	// Policy is p=, or sp= when the record is the organizational
	// domain's and the From domain is a subdomain (RFC 7489 §6.3).
	Policy      string
	ADKIM, ASPF Mode
	// Note says why no policy applies although records were found (several
	// DMARC records at one name); empty otherwise.
	Note string
}

// dmarcRecords keeps the TXT strings that are DMARC records: those whose
// first tag is v=DMARC1 (RFC 7489 §6.6.3 step 2, §6.4: v must come first).
func dmarcRecords(txts []string) []string {
	var out []string
	for _, t := range txts {
		k, _, _ := strings.Cut(t, ";")
		name, val, ok := strings.Cut(k, "=")
		if ok && strings.TrimSpace(name) == "v" && strings.TrimSpace(val) == "DMARC1" {
			out = append(out, t)
		}
	}
	return out
}

// errTemp marks a lookup that failed for now.
var errTemp = errors.New("temporary DNS failure")

// LookupRecord finds the DMARC record that applies to the (normalised)
// From domain (RFC 7489 §6.6.3): _dmarc.DOMAIN, then _dmarc.ORGDOMAIN. It
// returns nil, nil when there is none (or none that is valid, §6.6.3 step
// 4), and an error wrapping errTemp when DNS failed for now.
func LookupRecord(ctx context.Context, r resolver.Resolver, from string, timeout time.Duration) (*Record, error) {
	var multiple map[string]int // made when a name has several records
	opts := &dmarc.LookupOptions{LookupTXT: func(name string) ([]string, error) {
		// Each lookup within timeout; a caller's deadline that comes
		// sooner (end of message bounds both lookups together) is that
		// bound already, without a context of its own.
		lctx, cancel := clock.WithTimeout(ctx, timeout)
		defer cancel()
		txts, err := r.LookupTXT(lctx, name)
		if err != nil {
			return nil, err
		}
		// RFC 7489 §6.6.3 steps 2 and 4: more than one DMARC record at a
		// name means no policy at all; the first one returned must not win
		// (DNS answer order is random, the verdict must not be).
		recs := dmarcRecords(txts)
		if len(recs) > 1 {
			if multiple == nil {
				multiple = map[string]int{}
			}
			multiple[name] = len(recs)
			return nil, nil
		}
		return recs, nil
	}}
	domains := []string{from}
	if org := OrgDomain(from); org != "" && org != from {
		domains = append(domains, org)
	}
	for i, d := range domains {
		rec, err := dmarc.LookupWithOptions(d, opts)
		switch {
		case err == nil:
			out := &Record{Domain: d, Policy: string(rec.Policy), ADKIM: Relaxed, ASPF: Relaxed}
			if i > 0 && rec.SubdomainPolicy != "" {
				out.Policy = string(rec.SubdomainPolicy)
			}
			if rec.DKIMAlignment == dmarc.AlignmentStrict {
				out.ADKIM = Strict
			}
			if rec.SPFAlignment == dmarc.AlignmentStrict {
				out.ASPF = Strict
			}
			return out, nil
		case dmarc.IsTempFail(err):
			return nil, fmt.Errorf("%w: _dmarc.%s: %v", errTemp, d, err)
		case errors.Is(err, dmarc.ErrNoPolicy):
			if n := multiple["_dmarc."+d]; n > 0 {
				// Policy discovery terminates: no organizational fallback.
				return &Record{Domain: d, ADKIM: Relaxed, ASPF: Relaxed,
					Note: fmt.Sprintf("%d DMARC records at _dmarc.%s: none applies (RFC 7489 §6.6.3)", n, d)}, nil
			}
			continue
		default:
			var de *net.DNSError
			if errors.As(err, &de) && de.Temporary() {
				return nil, fmt.Errorf("%w: _dmarc.%s: %v", errTemp, d, err)
			}
			// A malformed record is no record (RFC 7489 §6.6.3 step 4);
			// the organizational domain's may still apply.
			continue
		}
	}
	return nil, nil
}

// EOM evaluates DMARC.
func (c *DMARCCheck) EOM(ctx context.Context, t *policy.Txn) ([]policy.Finding, error) {
	from := FromDomain(t)
	if from == "" {
		return nil, nil
	}
	// Both lookups (the domain's, the organizational domain's) together
	// within one DNS timeout.
	lctx, cancel := clock.WithTimeout(ctx, c.timeout)
	rec, err := LookupRecord(lctx, c.res, from, c.timeout)
	cancel()
	r := get(t)
	if err != nil {
		// Defer only when the record could change the outcome. An SPF or
		// DKIM pass for exactly the From domain is aligned in strict and
		// relaxed mode alike (RFC 7489 §3.1), so such mail passes DMARC
		// whatever the record says (§4.2): the failed lookup changes nothing.
		spfExact := r.SPF != nil && r.SPF.Pass() && Aligned(Strict, r.SPF.Domain, from)
		dkimExact := dkimAligned(r, Strict, from)
		if !spfExact && !dkimExact {
			return nil, policy.ErrorWithReply(err, policy.ReplyDirectoryFailure)
		}
		r.DMARC = &DMARCResult{FromDomain: from, Policy: "unknown", ADKIM: Strict, ASPF: Strict, SPFAligned: spfExact, DKIMAligned: dkimExact}
		return nil, nil
	}
	res := &DMARCResult{FromDomain: from, ADKIM: Relaxed, ASPF: Relaxed}
	note := ""
	if rec != nil {
		res.RecordDomain, res.Policy, res.ADKIM, res.ASPF = rec.Domain, rec.Policy, rec.ADKIM, rec.ASPF
		note = rec.Note
		if note != "" {
			res.RecordDomain = ""
		}
	}
	// RFC 7489 §3.1.2: SPF counts when it passed for an identity aligned
	// with the From domain.
	if r.SPF != nil && r.SPF.Pass() && Aligned(res.ASPF, r.SPF.Domain, from) {
		res.SPFAligned = true
	}
	// RFC 7489 §3.1.1: a passing signature whose d= is aligned, including
	// the signature the gateway adds.
	res.DKIMAligned = dkimAligned(r, res.ADKIM, from)
	r.DMARC = res
	if res.Pass() {
		return nil, nil
	}

	spfRes, dkimRes := "none", "none"
	if r.SPF != nil {
		spfRes = r.SPF.Result + " (" + r.SPF.Domain + ")"
	}
	if len(r.DKIM) > 0 {
		dkimRes = ""
		for i, d := range r.DKIM {
			if i > 0 {
				dkimRes += ", "
			}
			dkimRes += d.Result + " (" + d.Domain + ")"
		}
	}
	f := policy.Finding{Attrs: map[string]string{"domain": from, "policy": res.Policy, "spf": spfRes, "dkim": dkimRes}}
	if res.Policy == "" {
		f.Attrs["policy"] = "absent"
	}
	require := c.def
	if t.Customer != nil {
		if cs, ok := policy.SettingsOf[CustomerSettings](t.Customer.Settings, CustomerSection.Family); ok && cs.RequireAlignment != nil {
			require = *cs.RequireAlignment
		} else if v, ok := c.require[t.Customer.ID]; ok {
			require = v
		}
	}
	policyReply := reply5726(fmt.Sprintf("DMARC policy of %s refuses unauthenticated mail: sign it with DKIM for %s or pass SPF for it", from, from),
		"DMARC policy of the From domain refuses unauthenticated mail: sign it with DKIM or pass SPF")
	requireReply := reply5726(fmt.Sprintf("Mail from %s must pass DKIM or SPF aligned with %s (DMARC)", from, from),
		"Mail must pass DKIM or SPF aligned with the From domain (DMARC)")
	switch res.Policy {
	case "reject", "quarantine":
		f.Name, f.Action, f.Reply = FindingDMARCReject, policy.Reject, policyReply
		if res.Policy == "quarantine" {
			f.Name = FindingDMARCQuarantine
		}
		f.Detail = fmt.Sprintf("DMARC p=%s of %s (record at _dmarc.%s) fails: SPF %s, DKIM %s", res.Policy, from, res.RecordDomain, spfRes, dkimRes)
	case "none":
		f.Name, f.Action, f.Reply = FindingDMARCUnaligned, policy.Accept, requireReply
		f.Detail = fmt.Sprintf("no aligned SPF or DKIM for %s (p=none at _dmarc.%s): SPF %s, DKIM %s", from, res.RecordDomain, spfRes, dkimRes)
	default:
		f.Name, f.Action, f.Reply = FindingDMARCNoRecord, policy.Accept, requireReply
		f.Detail = fmt.Sprintf("no DMARC record for %s and no aligned SPF or DKIM: SPF %s, DKIM %s", from, spfRes, dkimRes)
		if note != "" {
			f.Detail = fmt.Sprintf("no DMARC policy for %s (%s) and no aligned SPF or DKIM: SPF %s, DKIM %s", from, note, spfRes, dkimRes)
		}
	}
	if require && f.Action == policy.Accept {
		f.Action = policy.Reject
		f.Detail += "; the customer requires alignment"
	}
	return []policy.Finding{f}, nil
}

// reply5726 builds the DMARC refusal, RFC 7372 §3.3: X.7.26 multiple
// authentication checks failed. A text that would make an over-long reply
// line (RFC 5321 §4.5.3.1.5) falls back to the short form.
func reply5726(text, short string) policy.Reply {
	if len(text) <= 300 {
		if r, err := policy.NewReply(550, "5.7.26", text); err == nil {
			return r
		}
	}
	return policy.MustReply(550, "5.7.26", short)
}
