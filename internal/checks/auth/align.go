package auth

import (
	"strings"

	"golang.org/x/net/publicsuffix"

	"github.com/aupguard/aupguard/internal/checks/authres"
	"github.com/aupguard/aupguard/internal/mailaddr"
)

// Mode is a DMARC identifier alignment mode (RFC 7489 §3.1).
type Mode = authres.Mode

// The alignment modes: relaxed (organizational domains equal, the default
// of adkim and aspf) and strict (domains equal).
const (
	Relaxed = authres.Relaxed
	Strict  = authres.Strict
)

// normalize lower-cases, strips a trailing dot and turns U-labels into
// A-labels; "" for a name that is no domain.
func normalize(d string) string {
	n, err := mailaddr.NormalizeDomain(d)
	if err != nil {
		return ""
	}
	return n
}

// OrgDomain returns the organizational domain of a domain (RFC 7489 §3.2):
// the public suffix plus one label, with the public suffix list of
// golang.org/x/net/publicsuffix (ICANN and private sections, so that the
// customers of a hosting platform such as github.io are organizations of
// their own). A domain that is itself a public suffix is its own
// organizational domain. The result is normalised; "" for a bad domain.
func OrgDomain(domain string) string {
	d := normalize(domain)
	if d == "" {
		return ""
	}
	org, err := publicsuffix.EffectiveTLDPlusOne(d)
	if err != nil {
		// d is a public suffix (or a single label): RFC 7489 §3.2 step 3
		// takes the domain itself.
		return d
	}
	return org
}

// Aligned reports whether an authenticated domain (a DKIM d= or the SPF
// identity) is aligned with the RFC5322.From domain under mode: strict
// needs the same domain, relaxed the same organizational domain (RFC 7489
// §3.1.1, §3.1.2). Case, a trailing dot and U-labels do not matter.
func Aligned(mode Mode, authDomain, fromDomain string) bool {
	a, f := normalize(authDomain), normalize(fromDomain)
	if a == "" || f == "" {
		return false
	}
	if a == f {
		return true
	}
	if mode == Strict {
		return false
	}
	oa := OrgDomain(a)
	return oa != "" && oa == OrgDomain(f)
}

// isSubdomainOrSelf reports whether d is parent or below it; both normalised.
func isSubdomainOrSelf(d, parent string) bool {
	return d == parent || strings.HasSuffix(d, "."+parent)
}
