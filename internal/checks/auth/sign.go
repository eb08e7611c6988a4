package auth

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"hash"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/policy"
)

// SignName is the DKIM signing check's name.
const SignName = "dkim_sign"

// Key is one customer signing key.
type Key struct {
	Domain   string // normalised
	Selector string
	Signer   crypto.Signer
}

// Algorithm returns the key's a= tag value: rsa-sha256 (RFC 6376 §3.3)
// or ed25519-sha256 (RFC 8463 §3).
func (k Key) Algorithm() string {
	if _, ok := k.Signer.(ed25519.PrivateKey); ok {
		return "ed25519-sha256"
	}
	return "rsa-sha256"
}

// DNSRecord returns the TXT record to publish at SELECTOR._domainkey.DOMAIN
// (RFC 6376 §3.6.1).
func (k Key) DNSRecord() (string, error) {
	switch pub := k.Signer.Public().(type) {
	case ed25519.PublicKey:
		return "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub), nil
	case *rsa.PublicKey:
		// SubjectPublicKeyInfo, as every verifier accepts it (RFC 6376
		// errata 3017).
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			return "", err
		}
		return "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der), nil
	}
	return "", fmt.Errorf("unsupported key type %T", k.Signer.Public())
}

// Keys are the customers' signing keys, by customer id.
type Keys map[string][]Key

// LoadKeys returns every customer's signing keys of cfg, as validating
// the customers read them (Config.Keys).
func LoadKeys(cfg *config.Config) (Keys, error) {
	a, err := ConfigOf(cfg)
	if err != nil {
		return nil, err
	}
	return a.Keys(cfg.Customers)
}

// Keys returns the signing keys of customers, taken from what validating
// them read (checkCustomer), or read now for customers that were not
// validated with this package's section (ReadDKIMKey: missing files, loose
// permissions and weak keys are errors naming the config path). All
// errors are returned together.
func (a *Config) Keys(customers []config.Customer) (Keys, error) {
	kf := a.keys
	if kf == nil {
		kf = newKeyFiles()
	}
	ks := Keys{}
	var errs []string
	for i, c := range customers {
		for j, k := range c.DKIM {
			signer, err := kf.get(k.KeyFile)
			if err != nil {
				errs = append(errs, fmt.Sprintf("customers[%d].dkim[%d].key_file: %v", i, j, err))
				continue
			}
			d := normalize(k.Domain)
			if d == "" {
				errs = append(errs, fmt.Sprintf("customers[%d].dkim[%d].domain: bad domain %q", i, j, k.Domain))
				continue
			}
			ks[c.ID] = append(ks[c.ID], Key{Domain: d, Selector: strings.ToLower(k.Selector), Signer: signer})
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return ks, nil
}

// For returns the key that signs mail from the (normalised) From domain
// for customer: the key of that very domain, else of its closest parent
// (a signature of example.com is aligned with news.example.com under
// relaxed alignment, RFC 7489 §3.1.1).
func (ks Keys) For(customer, from string) (Key, bool) {
	var best Key
	found := false
	for _, k := range ks[customer] {
		if isSubdomainOrSelf(from, k.Domain) && (!found || len(k.Domain) > len(best.Domain)) {
			best, found = k, true
		}
	}
	return best, found
}

// SignOptions tune the signer.
type SignOptions struct {
	// Headers are signed when present, each instance (RFC 6376 §5.4.2).
	Headers []string
	// Oversign are signed once more than they occur (RFC 6376 §8.15).
	Oversign []string
	// Expiration sets x= that long after t= when positive.
	Expiration time.Duration
}

// Signer signs accepted messages of customers with a key for their From
// domain (c=relaxed/relaxed). The body hash is computed as the body
// streams; the header hash at end of message, over the message's headers
// and those the checks before it asked to add (List-Unsubscribe...), in
// the order the message will have them. It adds its DKIM-Signature last.
type Signer struct {
	keys Keys
	opts SignOptions
	clk  clock.Clock
}

// NewSigner returns the dkim_sign check.
func NewSigner(keys Keys, opts SignOptions, clk clock.Clock) *Signer {
	if clk == nil {
		clk = clock.System{}
	}
	// RSA keys sign through this build's backend (rsa_go.go, or OpenSSL
	// with -tags openssl); the caller's Keys are left as they are.
	own := make(Keys, len(keys))
	for id, list := range keys {
		ks := make([]Key, len(list))
		for i, k := range list {
			k.Signer = rsaSigner(k.Signer)
			ks[i] = k
		}
		own[id] = ks
	}
	return &Signer{keys: own, opts: opts, clk: clk}
}

// Name implements policy.Check.
func (s *Signer) Name() string { return SignName }

type signKey struct{}

// signing is one message's signature under way.
type signing struct {
	key  Key
	h    hash.Hash
	body *relaxedBody
}

// Write feeds a body chunk to the body hash.
func (g *signing) Write(p []byte) (int, error) { return g.body.Write(p) }

// Body plans the signature, which the dkim and dmarc checks count as an
// aligned pass, and starts the body hash.
func (s *Signer) Body(t *policy.Txn) io.Writer {
	if t.Customer == nil {
		return nil
	}
	from := FromDomain(t)
	if from == "" {
		return nil
	}
	k, ok := s.keys.For(t.Customer.ID, from)
	if !ok {
		return nil
	}
	get(t).Sign = &Signing{Domain: k.Domain, Selector: k.Selector}
	g := &signing{key: k, h: sha256.New()}
	g.body = newRelaxedBody(g.h)
	t.SetValue(signKey{}, g)
	return g
}

// EOM adds the DKIM-Signature.
func (s *Signer) EOM(_ context.Context, t *policy.Txn) ([]policy.Finding, error) {
	g, _ := t.Value(signKey{}).(*signing)
	if g == nil {
		return nil, nil
	}
	t.SetValue(signKey{}, nil)
	if err := g.body.Close(); err != nil {
		return nil, fmt.Errorf("dkim body hash: %v", err)
	}
	// The message as it will leave: the headers the milter adds (in the
	// order added, on top), then the headers received.
	all := append(append([]policy.Header(nil), t.AddedHeaders()...), t.Headers...)
	names := s.signedNames(all, t.AddedHeaders())
	value, err := s.signNames(g.key, g.h.Sum(nil), all, names, s.clk.Now())
	if err != nil {
		return nil, err
	}
	t.AddHeader("DKIM-Signature", value)
	return nil, nil
}

// signedNames returns the h= list: each configured field as many times as
// it occurs (bottom-up selection, RFC 6376 §5.4.2), once more when it is
// oversigned, plus fields added by the checks before the signer.
func (s *Signer) signedNames(hdrs []policy.Header, added []policy.Header) []string {
	count := map[string]int{}
	for _, h := range hdrs {
		count[strings.ToLower(strings.TrimSpace(h.Name))]++
	}
	over := map[string]bool{}
	for _, n := range s.opts.Oversign {
		over[strings.ToLower(n)] = true
	}
	var names []string
	seen := map[string]bool{}
	add := func(n string) {
		l := strings.ToLower(n)
		if seen[l] || skipSign[l] {
			return
		}
		seen[l] = true
		c := count[l]
		if c > 0 && over[l] {
			c++
		}
		for i := 0; i < c; i++ {
			names = append(names, n)
		}
	}
	for _, n := range s.opts.Headers {
		add(n)
	}
	extra := make([]string, 0, len(added))
	for _, h := range added {
		extra = append(extra, strings.TrimSpace(h.Name))
	}
	sort.Strings(extra)
	for _, n := range extra {
		add(n)
	}
	return names
}

// skipSign are fields never signed: changed or added in transit.
var skipSign = map[string]bool{"dkim-signature": true, "received": true, "return-path": true}

// signNames builds the DKIM-Signature value (RFC 6376 §3.5, §5): tags,
// then the hash of the selected canonical header fields followed by the
// signature field itself with an empty b= (§3.7), signed with the key.
func (s *Signer) signNames(k Key, bodyHash []byte, hdrs []policy.Header, names []string, now time.Time) (string, error) {
	tags := []string{
		"v=1",
		"a=" + k.Algorithm(),
		"c=relaxed/relaxed",
		"d=" + k.Domain,
		"s=" + k.Selector,
		"t=" + strconv.FormatInt(now.Unix(), 10),
	}
	if s.opts.Expiration > 0 {
		tags = append(tags, "x="+strconv.FormatInt(now.Add(s.opts.Expiration).Unix(), 10))
	}
	tags = append(tags, "h="+strings.Join(names, ":"), "bh="+base64.StdEncoding.EncodeToString(bodyHash))
	unsigned := fold(tags) + ";\r\n\tb="

	h := sha256.New()
	used := map[string]int{}
	for _, n := range names {
		l := strings.ToLower(n)
		// RFC 6376 §5.4.2: instances are taken from the bottom up; a name
		// listed more often than it occurs selects nothing (oversigning).
		idx := -1
		skip := used[l]
		for i := len(hdrs) - 1; i >= 0; i-- {
			if strings.EqualFold(strings.TrimSpace(hdrs[i].Name), l) {
				if skip == 0 {
					idx = i
					break
				}
				skip--
			}
		}
		used[l]++
		if idx < 0 {
			continue
		}
		io.WriteString(h, relaxedHeader(hdrs[idx].Name, hdrs[idx].Value))
	}
	// RFC 6376 §3.7: the signature field itself, b= empty, canonicalized,
	// without its trailing CRLF.
	c := relaxedHeader("DKIM-Signature", unsigned)
	io.WriteString(h, strings.TrimSuffix(c, "\r\n"))
	sum := h.Sum(nil)

	var sig []byte
	var err error
	switch key := k.Signer.(type) {
	case ed25519.PrivateKey:
		// RFC 8463 §3: PureEdDSA over the SHA-256 hash.
		sig = ed25519.Sign(key, sum)
	default:
		sig, err = k.Signer.Sign(rand.Reader, sum, crypto.SHA256)
	}
	if err != nil {
		return "", fmt.Errorf("dkim sign with %s._domainkey.%s: %v", k.Selector, k.Domain, err)
	}
	return unsigned + foldBase64(base64.StdEncoding.EncodeToString(sig)), nil
}

// fold joins tags with "; ", breaking lines before 78 characters (RFC
// 5322 §2.1.1); the leading space keeps the raw-value convention. The h=
// list is broken at colons, where folding white space is allowed.
func fold(tags []string) string {
	var b strings.Builder
	line := len("DKIM-Signature:")
	b.WriteByte(' ')
	line++
	for i, t := range tags {
		if i > 0 {
			b.WriteString(";")
			line++
		}
		parts := []string{t}
		if strings.HasPrefix(t, "h=") {
			parts = strings.SplitAfter(t, ":")
		}
		for j, p := range parts {
			sep := ""
			if i > 0 && j == 0 {
				sep = " "
			}
			if line+len(sep)+len(p) > 76 {
				b.WriteString("\r\n\t")
				line = 1
				sep = ""
			}
			b.WriteString(sep + p)
			line += len(sep) + len(p)
		}
	}
	return b.String()
}

// foldBase64 breaks a base64 value into lines of at most 72 characters;
// white space inside b= is ignored by verifiers (RFC 6376 §3.5).
func foldBase64(s string) string {
	var b strings.Builder
	for len(s) > 72 {
		b.WriteString(s[:72])
		b.WriteString("\r\n\t ")
		s = s[72:]
	}
	b.WriteString(s)
	return b.String()
}
