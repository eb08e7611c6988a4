package auth

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"
	"time"

	"blitiri.com.ar/go/spf"

	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/resolver"
)

// DomainReport is what the DNS says about one of a customer's sender
// domains, and what the customer must fix for its mail to pass DMARC at
// the receivers.
type DomainReport struct {
	Domain string `json:"domain"`
	// SPF is the result for the provider's egress addresses (the worst).
	SPF string `json:"spf"`
	// SPFDetail names the egress address that gave SPF and why.
	SPFDetail string `json:"spf_detail,omitempty"`
	// DMARC is the policy that applies ("" without record) and where the
	// record is.
	DMARC       string `json:"dmarc"`
	DMARCRecord string `json:"dmarc_record,omitempty"`
	ADKIM       string `json:"adkim,omitempty"`
	ASPF        string `json:"aspf,omitempty"`
	// Keys are the gateway's signing keys for the domain.
	Keys []KeyReport `json:"keys,omitempty"`
	// Aligned says how mail from the domain passes DMARC: "dkim", "spf",
	// "dkim+spf", or "" when it does not.
	Aligned string `json:"aligned"`
	// Fix lists what to change, in the customer's words.
	Fix []string `json:"fix,omitempty"`
	// Err is a DNS failure that kept the report incomplete.
	Err string `json:"error,omitempty"`
}

// KeyReport is the state of one gateway signing key in the DNS.
type KeyReport struct {
	Domain   string `json:"domain"`
	Selector string `json:"selector"`
	// State is "published" (the DNS has this very key), "missing" (no
	// record), "mismatch" (another key) or "error".
	State string `json:"state"`
	// Record is the TXT record to publish.
	Record string `json:"record"`
	Err    string `json:"error,omitempty"`
}

// Diagnose reports, for each sender domain of a customer (a "*." pattern
// stands for its parent domain) and each of its signing keys' domains,
// the SPF result for the egress addresses, the DMARC policy, whether the
// gateway's keys are published, and what must be fixed.
func Diagnose(ctx context.Context, r resolver.Resolver, egress []netip.Addr, c config.Customer, keys []Key, timeout time.Duration) []DomainReport {
	seen := map[string]bool{}
	var domains []string
	add := func(d string) {
		d = normalize(strings.TrimPrefix(d, "*."))
		if d != "" && !seen[d] {
			seen[d] = true
			domains = append(domains, d)
		}
	}
	for _, d := range c.Domains {
		add(d)
	}
	for _, k := range keys {
		add(k.Domain)
	}
	sort.Strings(domains)
	out := make([]DomainReport, 0, len(domains))
	for _, d := range domains {
		out = append(out, diagnoseDomain(ctx, r, egress, d, keys, timeout))
	}
	return out
}

func diagnoseDomain(ctx context.Context, r resolver.Resolver, egress []netip.Addr, d string, keys []Key, timeout time.Duration) DomainReport {
	rep := DomainReport{Domain: d, SPF: "none"}
	// SPF for the domain as envelope sender, from every egress address.
	var worst spf.Result
	for i, ip := range egress {
		sctx, cancel := context.WithTimeout(ctx, 4*timeout)
		res, err := spf.CheckHostWithSender(net.IP(ip.AsSlice()), "", "postmaster@"+d, spf.WithResolver(r), spf.WithContext(sctx))
		cancel()
		if i == 0 || spfRank[res] > spfRank[worst] {
			worst = res
			rep.SPFDetail = "from " + ip.String()
			if err != nil {
				rep.SPFDetail += ": " + err.Error()
			}
		}
	}
	if len(egress) > 0 {
		rep.SPF = string(worst)
	} else {
		rep.SPFDetail = "provider.egress_ips is empty"
	}
	rec, err := LookupRecord(ctx, r, d, timeout)
	if err != nil {
		rep.Err = err.Error()
	}
	mode := Relaxed
	if rec != nil {
		rep.DMARC, rep.DMARCRecord, rep.ADKIM, rep.ASPF = rec.Policy, "_dmarc."+rec.Domain, rec.ADKIM.String(), rec.ASPF.String()
		mode = rec.ADKIM
	}
	dkimOK := false
	for _, k := range keys {
		if !isSubdomainOrSelf(d, k.Domain) && !isSubdomainOrSelf(k.Domain, d) {
			continue
		}
		kr := checkKey(ctx, r, k, timeout)
		rep.Keys = append(rep.Keys, kr)
		if kr.State == "published" && isSubdomainOrSelf(d, k.Domain) && Aligned(mode, k.Domain, d) {
			dkimOK = true
		}
		switch kr.State {
		case "missing", "mismatch":
			rep.Fix = append(rep.Fix, fmt.Sprintf("publish %s._domainkey.%s TXT %q", k.Selector, k.Domain, kr.Record))
		}
	}
	spfOK := rep.SPF == "pass"
	switch {
	case dkimOK && spfOK:
		rep.Aligned = "dkim+spf"
	case dkimOK:
		rep.Aligned = "dkim"
	case spfOK:
		rep.Aligned = "spf"
	}
	if !spfOK && len(egress) > 0 {
		ips := make([]string, len(egress))
		for i, ip := range egress {
			ips[i] = ip.String()
		}
		rep.Fix = append(rep.Fix, fmt.Sprintf("authorize %s in the SPF record of %s (SPF %s), or send with an envelope sender whose SPF does", strings.Join(ips, ", "), d, rep.SPF))
	}
	if !dkimOK && len(rep.Keys) == 0 {
		rep.Fix = append(rep.Fix, fmt.Sprintf("have the gateway sign for %s: add a dkim key to the customer (aupguard dkim keygen)", d))
	}
	if rec == nil && rep.Err == "" {
		rep.Fix = append(rep.Fix, fmt.Sprintf("publish a DMARC record: _dmarc.%s TXT \"v=DMARC1; p=none; rua=mailto:dmarc-reports@%s\"", OrgDomain(d), OrgDomain(d)))
	}
	return rep
}

// checkKey compares the key published at SELECTOR._domainkey.DOMAIN with k.
func checkKey(ctx context.Context, r resolver.Resolver, k Key, timeout time.Duration) KeyReport {
	kr := KeyReport{Domain: k.Domain, Selector: k.Selector}
	rec, err := k.DNSRecord()
	if err != nil {
		kr.State, kr.Err = "error", err.Error()
		return kr
	}
	kr.Record = rec
	lctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	txts, err := r.LookupTXT(lctx, k.Selector+"._domainkey."+k.Domain)
	if err != nil {
		var de *net.DNSError
		if errors.As(err, &de) && de.IsNotFound {
			kr.State = "missing"
			return kr
		}
		kr.State, kr.Err = "error", err.Error()
		return kr
	}
	kr.State = "missing"
	for _, t := range txts {
		pub, err := publishedKey(t)
		if err != nil {
			kr.State, kr.Err = "mismatch", err.Error()
			continue
		}
		if eq, ok := k.Signer.Public().(interface{ Equal(crypto.PublicKey) bool }); ok && eq.Equal(pub) {
			kr.State, kr.Err = "published", ""
			return kr
		}
		kr.State, kr.Err = "mismatch", "the DNS publishes another key"
	}
	return kr
}

// publishedKey parses the p= of a DKIM key record (RFC 6376 §3.6.1):
// SubjectPublicKeyInfo or RSAPublicKey for k=rsa, 32 raw octets for
// k=ed25519 (RFC 8463 §4).
func publishedKey(txt string) (crypto.PublicKey, error) {
	tags := map[string]string{}
	for _, kv := range strings.Split(txt, ";") {
		k, v, ok := strings.Cut(kv, "=")
		if ok {
			tags[strings.TrimSpace(k)] = strings.Join(strings.Fields(v), "")
		}
	}
	p := tags["p"]
	if p == "" {
		return nil, fmt.Errorf("record has no key (p= empty: revoked)")
	}
	der, err := base64.StdEncoding.DecodeString(p)
	if err != nil {
		return nil, fmt.Errorf("p= is not base64: %v", err)
	}
	if tags["k"] == "ed25519" {
		if len(der) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("ed25519 key of %d octets", len(der))
		}
		return ed25519.PublicKey(der), nil
	}
	if pub, err := x509.ParsePKIXPublicKey(der); err == nil {
		return pub, nil
	}
	pub, err := x509.ParsePKCS1PublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("p= is no RSA public key")
	}
	return pub, nil
}
