package config

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"
)

// Defaults of the dns and auth sections.
const (
	// DefaultDNSTimeout bounds one lookup (all upstreams, retries
	// included). It stays below milter.decision_timeout so that a slow DNS
	// becomes a "451 4.4.3" of its own and not a generic timeout.
	DefaultDNSTimeout = time.Second
	// DefaultDNSMaxTTL caps the time an answer is cached, whatever its TTL.
	DefaultDNSMaxTTL = time.Hour
	// DefaultDNSNegativeTTL caps the time a negative answer (NXDOMAIN,
	// NODATA) is cached; RFC 2308 §5 recommends one to three hours at most,
	// a gateway wants a customer's DNS fix seen sooner.
	DefaultDNSNegativeTTL = 5 * time.Minute
	// DefaultDNSCacheSize is the number of cached questions.
	DefaultDNSCacheSize = 20000
	// DefaultDKIMMaxSignatures is how many DKIM signatures of one message
	// are verified; the rest are ignored (RFC 6376 §6.1 lets a verifier limit them).
	DefaultDKIMMaxSignatures = 5
)

// DefaultSignedHeaders are the header fields a gateway DKIM signature
// covers when present (RFC 6376 §5.4.1 recommends the first ones; the
// List-Unsubscribe fields must be signed for one-click unsubscribe, RFC 8058 §4).
var DefaultSignedHeaders = []string{
	"From", "Reply-To", "Sender", "To", "Cc", "Subject", "Date", "Message-ID",
	"In-Reply-To", "References", "MIME-Version", "Content-Type",
	"Content-Transfer-Encoding", "List-Unsubscribe", "List-Unsubscribe-Post",
	"List-Id", "Feedback-ID",
}

// DNSConfig configures the caching resolver shared by all checks.
type DNSConfig struct {
	// Servers are the upstream recursive resolvers, "HOST" or "HOST:PORT"
	// (port 53 by default), tried in order. Empty: the nameservers of
	// /etc/resolv.conf.
	Servers []string `yaml:"servers"`
	// Timeout bounds one lookup, every server and retry included.
	Timeout time.Duration `yaml:"timeout"`
	// MaxTTL caps how long a positive answer is cached.
	MaxTTL time.Duration `yaml:"max_ttl"`
	// NegativeTTL caps how long a negative answer is cached (its own TTL
	// is the SOA minimum, RFC 2308 §5).
	NegativeTTL time.Duration `yaml:"negative_ttl"`
	// CacheSize is the number of questions kept; the least recently used
	// goes first.
	CacheSize int `yaml:"cache_size"`
}

// AuthConfig configures the SPF, DKIM and DMARC checks and DKIM signing,
// provider-wide.
type AuthConfig struct {
	DKIM    DKIMVerifyConfig `yaml:"dkim"`
	DMARC   DMARCConfig      `yaml:"dmarc"`
	Signing SigningConfig    `yaml:"signing"`
}

// DKIMVerifyConfig tunes the verification of customers' own signatures.
type DKIMVerifyConfig struct {
	// MaxSignatures is how many signatures of one message are verified.
	MaxSignatures int `yaml:"max_signatures"`
}

// DMARCConfig tunes the DMARC check.
type DMARCConfig struct {
	// RequireAlignment refuses unaligned mail of every customer even when
	// the From domain has no DMARC record or p=none; a customer's own
	// require_alignment overrides it.
	RequireAlignment bool `yaml:"require_alignment"`
}

// SigningConfig tunes the gateway's DKIM signatures.
type SigningConfig struct {
	// Headers are the header fields signed when present.
	Headers []string `yaml:"headers"`
	// Oversign lists fields signed once more than they occur, so that a
	// copy added on the way breaks the signature (RFC 6376 §8.15).
	Oversign []string `yaml:"oversign"`
	// Expiration, when set, is the signature's lifetime (tag x=).
	Expiration time.Duration `yaml:"expiration"`
}

// CustomerAuth is a customer's own authentication settings. Its keys sit
// directly in the customer's entry.
type CustomerAuth struct {
	// RequireAlignment, when set, overrides auth.dmarc.require_alignment.
	RequireAlignment *bool `yaml:"require_alignment"`
	// DKIM are the customer's signing keys, one per domain.
	DKIM []DKIMKey `yaml:"dkim"`
}

// DKIMKey is one signing key of a customer.
type DKIMKey struct {
	// Domain is the signing domain (d=); mail whose From domain is this
	// domain or one of its subdomains is signed with it.
	Domain string `yaml:"domain"`
	// Selector is the key's selector (s=): its public key is published at
	// SELECTOR._domainkey.DOMAIN.
	Selector string `yaml:"selector"`
	// KeyFile is a PEM private key, RSA of at least 2048 bits or Ed25519,
	// in PKCS#1 or PKCS#8 form, readable by its owner only.
	KeyFile string `yaml:"key_file"`
}

func (d *DNSConfig) defaults() {
	if d.Timeout == 0 {
		d.Timeout = DefaultDNSTimeout
	}
	if d.MaxTTL == 0 {
		d.MaxTTL = DefaultDNSMaxTTL
	}
	if d.NegativeTTL == 0 {
		d.NegativeTTL = DefaultDNSNegativeTTL
	}
	if d.CacheSize == 0 {
		d.CacheSize = DefaultDNSCacheSize
	}
}

func (d *DNSConfig) validate(v *validator) {
	for i, s := range d.Servers {
		if _, err := ServerAddr(s); err != nil {
			v.errf(fmt.Sprintf("dns.servers[%d]", i), "%v", err)
		}
	}
	v.duration("dns.timeout", d.Timeout)
	v.duration("dns.max_ttl", d.MaxTTL)
	v.duration("dns.negative_ttl", d.NegativeTTL)
	v.positive("dns.cache_size", d.CacheSize)
	if d.Timeout > 0 && d.Timeout >= v.cfg.Milter.DecisionTimeout {
		v.errf("dns.timeout", "%s must be shorter than milter.decision_timeout (%s), or a slow DNS server makes every decision time out", d.Timeout, v.cfg.Milter.DecisionTimeout)
	}
}

// ServerAddr turns a dns.servers entry ("192.0.2.53", "[2001:db8::53]:5353",
// "192.0.2.53:53") into HOST:PORT. Only addresses are accepted: resolving
// a server's name would need a resolver.
func ServerAddr(s string) (string, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		return net.JoinHostPort(a.String(), "53"), nil
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil || ap.Port() == 0 {
		return "", fmt.Errorf("bad DNS server %q: want an IP address, optionally with :PORT", s)
	}
	return ap.String(), nil
}

func (a *AuthConfig) defaults() {
	if a.DKIM.MaxSignatures == 0 {
		a.DKIM.MaxSignatures = DefaultDKIMMaxSignatures
	}
	if a.Signing.Headers == nil {
		a.Signing.Headers = append([]string(nil), DefaultSignedHeaders...)
	}
	if a.Signing.Oversign == nil {
		a.Signing.Oversign = []string{"From"}
	}
}

func (a *AuthConfig) validate(v *validator) {
	v.positive("auth.dkim.max_signatures", a.DKIM.MaxSignatures)
	v.duration("auth.signing.expiration", a.Signing.Expiration)
	if a.Signing.Expiration > 0 && a.Signing.Expiration < time.Hour {
		v.errf("auth.signing.expiration", "%s is too short: mail may sit in a queue for days (want 0 or at least 1h)", a.Signing.Expiration)
	}
	from := false
	for i, h := range a.Signing.Headers {
		if !ValidFieldName(h) {
			v.errf(fmt.Sprintf("auth.signing.headers[%d]", i), "bad header field name %q", h)
		}
		if strings.EqualFold(h, "From") {
			from = true
		}
		if strings.EqualFold(h, "DKIM-Signature") || strings.EqualFold(h, "Received") || strings.EqualFold(h, "Return-Path") {
			v.errf(fmt.Sprintf("auth.signing.headers[%d]", i), "%s must not be signed: it is added or changed in transit", h)
		}
	}
	if !from {
		// RFC 6376 §5.4: the From header field MUST be signed.
		v.errf("auth.signing.headers", "must include From (RFC 6376 §5.4)")
	}
	for i, h := range a.Signing.Oversign {
		if !ValidFieldName(h) {
			v.errf(fmt.Sprintf("auth.signing.oversign[%d]", i), "bad header field name %q", h)
		}
	}
}

func (a *CustomerAuth) validate(v *validator, p string) {
	seen := map[string]int{}
	for i, k := range a.DKIM {
		kp := fmt.Sprintf("%s.dkim[%d]", p, i)
		if k.Domain == "" {
			v.errf(kp+".domain", "signing domain missing")
		} else if strings.HasPrefix(k.Domain, "*") {
			v.errf(kp+".domain", "a signing domain is one domain, not a pattern: %q", k.Domain)
		} else {
			v.domainPattern(kp+".domain", k.Domain)
			d := strings.ToLower(strings.TrimSuffix(k.Domain, "."))
			if j, dup := seen[d]; dup {
				v.errf(kp+".domain", "domain %q already has a key in %s.dkim[%d]", k.Domain, p, j)
			}
			seen[d] = i
		}
		if !validSelector(k.Selector) {
			v.errf(kp+".selector", "bad selector %q: want DNS labels (letters, digits, '-', dots)", k.Selector)
		}
		if k.KeyFile == "" {
			v.errf(kp+".key_file", "key_file missing")
		} else if _, err := ReadDKIMKey(k.KeyFile); err != nil {
			v.errf(kp+".key_file", "%v", err)
		}
	}
}

// validSelector reports whether s is a DKIM selector (RFC 6376 §3.1: one
// or more dot-separated sub-domain labels).
func validSelector(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, l := range strings.Split(s, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// MinRSABits is the smallest RSA signing key accepted (RFC 8301 §3.2
// requires at least 1024 and recommends 2048; receivers treat shorter
// keys as no signature).
const MinRSABits = 2048

// ReadDKIMKey reads a DKIM private key: PEM, PKCS#1 ("RSA PRIVATE KEY") or
// PKCS#8 ("PRIVATE KEY"), RSA of at least MinRSABits bits or Ed25519
// (RFC 8463). The file must not be readable by group or others: it is a
// secret that signs the customer's mail.
func ReadDKIMKey(path string) (crypto.Signer, error) {
	fi, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("key file %s does not exist", path)
		}
		return nil, fmt.Errorf("key file: %v", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("key file %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("key file %s is readable by group or others (mode %04o): chmod 600 it", path, perm)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("key file: %v", err)
	}
	return ParseDKIMKey(data, path)
}

// ParseDKIMKey parses PEM key data as ReadDKIMKey does; name is for errors.
func ParseDKIMKey(data []byte, name string) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("key file %s: no PEM block found", name)
	}
	var key any
	var err error
	switch block.Type {
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("key file %s: PEM block %q is not a private key (want \"PRIVATE KEY\" or \"RSA PRIVATE KEY\")", name, block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("key file %s: %v", name, err)
	}
	switch k := key.(type) {
	case *rsa.PrivateKey:
		if bits := k.N.BitLen(); bits < MinRSABits {
			return nil, fmt.Errorf("key file %s: RSA key of %d bits is too weak (want at least %d)", name, bits, MinRSABits)
		}
		return k, nil
	case ed25519.PrivateKey:
		return k, nil
	default:
		return nil, fmt.Errorf("key file %s: %T keys cannot sign DKIM (want RSA or Ed25519)", name, key)
	}
}
