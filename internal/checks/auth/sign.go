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
	// rot, when set, is a rotated domain: Selector and Signer are those
	// of the key it signs with at the time (Resolve).
	rot *rotatedDomain
}

// Resolve returns the key that signs now: k itself, or for a rotated
// domain the key chosen by its rotation (false when none is usable).
func (k Key) Resolve() (Key, bool) {
	if k.rot == nil {
		return k, k.Signer != nil
	}
	return k.rot.current()
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
	if k.Signer == nil {
		return "", fmt.Errorf("no key")
	}
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
	ks, err := a.Keys(cfg.Customers)
	if err != nil {
		return nil, err
	}
	// A rotated domain stands for each of its keys that is not retired.
	for id, list := range ks {
		var out []Key
		for _, k := range list {
			if k.rot == nil {
				out = append(out, k)
				continue
			}
			k.rot.mu.Lock()
			for _, rk := range k.rot.keys {
				out = append(out, Key{Domain: rk.key.Domain, Selector: rk.key.Selector, Signer: rk.signer})
			}
			k.rot.mu.Unlock()
		}
		ks[id] = out
	}
	return ks, nil
}

// Keys returns the signing keys of customers, taken from what validating
// them read (checkCustomer), or read now for customers that were not
// validated with this package's section (ReadDKIMKey: missing files, loose
// permissions and weak keys are errors naming the config path). All
// errors are returned together.
func (a *Config) Keys(customers []config.Customer) (Keys, error) {
	return a.KeysWith(customers, nil)
}

// KeysWith is Keys with the Rotation that follows the rotated domains
// (nil: one that reads their state files only, never DNS).
func (a *Config) KeysWith(customers []config.Customer, ro *Rotation) (Keys, error) {
	kf := a.keys
	if kf == nil {
		kf = newKeyFiles()
	}
	ks := Keys{}
	var errs []string
	for i, c := range customers {
		for j, k := range c.DKIM {
			if k.Rotated {
				if ro == nil {
					ro = NewRotation(a.DKIM.Rotation, nil, 0, nil, nil)
					ro.kf = kf
				}
				rd, err := ro.domain(k.Domain)
				if err != nil {
					errs = append(errs, fmt.Sprintf("customers[%d].dkim[%d].rotated: %v", i, j, err))
					continue
				}
				ks[c.ID] = append(ks[c.ID], Key{Domain: rd.domain, rot: rd})
				continue
			}
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
			if k.rot == nil { // a rotated key is wrapped when read
				k.Signer = rsaSigner(k.Signer)
			}
			ks[i] = k
		}
		own[id] = ks
	}
	return &Signer{keys: own, opts: opts, clk: clk}
}

// Name implements policy.Check.
func (s *Signer) Name() string { return SignName }

// signOf is dkim_sign's signature in progress.
var signOf = policy.NewState[*signing]()

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
	if ok {
		k, ok = k.Resolve()
	}
	if !ok {
		return nil
	}
	get(t).Sign = &Signing{Domain: k.Domain, Selector: k.Selector}
	g := &signing{key: k, h: sha256.New()}
	g.body = newRelaxedBody(g.h)
	signOf.Set(t, g)
	return g
}

// EOM adds the DKIM-Signature.
func (s *Signer) EOM(_ context.Context, t *policy.Txn) ([]policy.Finding, error) {
	g, _ := signOf.Get(t)
	if g == nil {
		return nil, nil
	}
	signOf.Clear(t)
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
// oversigned, plus fields added by the checks before the signer. Names
// compare case-insensitively (RFC 5322 §1.2.2), as signNames selects them.
func (s *Signer) signedNames(hdrs []policy.Header, added []policy.Header) []string {
	names := make([]string, 0, len(s.opts.Headers)+len(s.opts.Oversign)+2*len(added))
	var seenBuf [32]string
	seen := seenBuf[:0]
	add := func(n string) {
		if skipSign(n) || containsFold(seen, n) {
			return
		}
		seen = append(seen, n)
		c := 0
		for i := range hdrs {
			if strings.EqualFold(strings.TrimSpace(hdrs[i].Name), n) {
				c++
			}
		}
		if c > 0 && containsFold(s.opts.Oversign, n) {
			c++
		}
		for i := 0; i < c; i++ {
			names = append(names, n)
		}
	}
	for _, n := range s.opts.Headers {
		add(n)
	}
	var extraBuf [8]string
	extra := extraBuf[:0]
	for _, h := range added {
		extra = append(extra, strings.TrimSpace(h.Name))
	}
	sort.Strings(extra)
	for _, n := range extra {
		add(n)
	}
	return names
}

// containsFold reports whether list holds name, ignoring case.
func containsFold(list []string, name string) bool {
	for _, l := range list {
		if strings.EqualFold(l, name) {
			return true
		}
	}
	return false
}

// skipSign reports whether a field is never signed: changed or added in
// transit.
func skipSign(name string) bool {
	return strings.EqualFold(name, "DKIM-Signature") || strings.EqualFold(name, "Received") || strings.EqualFold(name, "Return-Path")
}

// signNames builds the DKIM-Signature value (RFC 6376 §3.5, §5): tags,
// then the hash of the selected canonical header fields followed by the
// signature field itself with an empty b= (§3.7), signed with the key.
// The value is built in one buffer (no string per tag or per field).
func (s *Signer) signNames(k Key, bodyHash []byte, hdrs []policy.Header, names []string, now time.Time) (string, error) {
	var out strings.Builder
	size := 256 + len(k.Domain) + len(k.Selector) + 1024 // tags and b= of an RSA-4096 signature, folded
	for _, n := range names {
		size += len(n) + 4
	}
	out.Grow(size)
	f := folder{b: &out, line: len("DKIM-Signature:")}
	out.WriteByte(' ')
	f.line++
	f.tag("v=", "1")
	f.tag("a=", k.Algorithm())
	f.tag("c=", "relaxed/relaxed")
	f.tag("d=", k.Domain)
	f.tag("s=", k.Selector)
	var num [20]byte
	f.tagBytes("t=", strconv.AppendInt(num[:0], now.Unix(), 10))
	if s.opts.Expiration > 0 {
		f.tagBytes("x=", strconv.AppendInt(num[:0], now.Add(s.opts.Expiration).Unix(), 10))
	}
	f.list("h=", names)
	var bh [64]byte
	n := base64.StdEncoding.EncodedLen(len(bodyHash))
	if n > len(bh) {
		return "", fmt.Errorf("dkim body hash of %d bytes", len(bodyHash))
	}
	base64.StdEncoding.Encode(bh[:n], bodyHash)
	f.tagBytes("bh=", bh[:n])
	out.WriteString(";\r\n\tb=")
	// The builder only appends: this string stays the unsigned value.
	unsigned := out.String()

	h := sha256.New()
	var cbuf [512]byte
	canon := cbuf[:0]
	var usedBuf [32]struct {
		name string
		n    int
	}
	used := usedBuf[:0]
	for _, n := range names {
		// RFC 6376 §5.4.2: instances are taken from the bottom up; a name
		// listed more often than it occurs selects nothing (oversigning).
		u := -1
		for i := range used {
			if strings.EqualFold(used[i].name, n) {
				u = i
				break
			}
		}
		if u < 0 {
			used = append(used, struct {
				name string
				n    int
			}{n, 0})
			u = len(used) - 1
		}
		idx := -1
		skip := used[u].n
		for i := len(hdrs) - 1; i >= 0; i-- {
			if strings.EqualFold(strings.TrimSpace(hdrs[i].Name), n) {
				if skip == 0 {
					idx = i
					break
				}
				skip--
			}
		}
		used[u].n++
		if idx < 0 {
			continue
		}
		canon = appendRelaxedHeader(canon[:0], hdrs[idx].Name, hdrs[idx].Value)
		h.Write(canon)
	}
	// RFC 6376 §3.7: the signature field itself, b= empty, canonicalized,
	// without its trailing CRLF.
	canon = appendRelaxedHeader(canon[:0], "DKIM-Signature", unsigned)
	h.Write(canon[:len(canon)-2])
	var sumBuf [sha256.Size]byte
	sum := h.Sum(sumBuf[:0])

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
	var ebuf [1024]byte
	var enc []byte
	if n := base64.StdEncoding.EncodedLen(len(sig)); n <= len(ebuf) {
		enc = ebuf[:n]
	} else {
		enc = make([]byte, n)
	}
	base64.StdEncoding.Encode(enc, sig)
	// b= broken into lines of at most 72 characters; white space inside
	// b= is ignored by verifiers (RFC 6376 §3.5).
	for len(enc) > 72 {
		out.Write(enc[:72])
		out.WriteString("\r\n\t ")
		enc = enc[72:]
	}
	out.Write(enc)
	return out.String(), nil
}

// folder writes tags joined with "; ", breaking lines before 78
// characters (RFC 5322 §2.1.1); the leading space keeps the raw-value
// convention. The h= list is broken at colons, where folding white space
// is allowed.
type folder struct {
	b    *strings.Builder
	line int
	tags int
}

// next starts a tag: the separator after the previous one.
func (f *folder) next() {
	if f.tags > 0 {
		f.b.WriteByte(';')
		f.line++
	}
	f.tags++
}

// part writes one unbreakable piece a+v+c, on a new line when it would
// not fit; first pieces of tags after the first get a space before them.
func (f *folder) part(first bool, a string, v []byte, vs, c string) {
	sep := 0
	if first && f.tags > 1 {
		sep = 1
	}
	n := len(a) + len(v) + len(vs) + len(c)
	if f.line+sep+n > 76 {
		f.b.WriteString("\r\n\t")
		f.line = 1
		sep = 0
	}
	if sep == 1 {
		f.b.WriteByte(' ')
	}
	f.b.WriteString(a)
	f.b.Write(v)
	f.b.WriteString(vs)
	f.b.WriteString(c)
	f.line += sep + n
}

func (f *folder) tag(name, value string) {
	f.next()
	f.part(true, name, nil, value, "")
}

func (f *folder) tagBytes(name string, value []byte) {
	f.next()
	f.part(true, name, value, "", "")
}

// list writes name followed by items joined with ':', breakable after
// each colon.
func (f *folder) list(name string, items []string) {
	f.next()
	if len(items) == 0 {
		f.part(true, name, nil, "", "")
		return
	}
	for i, it := range items {
		a, c := "", ":"
		if i == 0 {
			a = name
		}
		if i == len(items)-1 {
			c = ""
		}
		f.part(i == 0, a, nil, it, c)
	}
}
