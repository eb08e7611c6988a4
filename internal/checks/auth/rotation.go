package auth

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aupguard/aupguard/internal/atomicfile"
	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/resolver"
)

// DKIM key rotation. A rotated signing domain keeps its keys in a
// directory of their own, which config management may copy to every
// gateway of a fleet:
//
//	KEYS_DIR/DOMAIN/state.json      the selectors, oldest first, and their states
//	KEYS_DIR/DOMAIN/SELECTOR.key    the private key (PEM, mode 0600)
//	KEYS_DIR/DOMAIN/SELECTOR.txt    the DNS record to publish
//
// Only the operator's commands write the directory ("aupguard dkim rotate"
// adds a pending key, "aupguard dkim status" records what DNS shows);
// gateways only read it. A gateway signs with the newest key that is
// either marked active in the state file or whose record it has itself
// seen published in DNS, matching the key. Until then it keeps signing
// with the key before it, so signing never breaks, and every gateway that
// reads the same directory and asks the same DNS makes the same choice.

// Key states in the state file.
const (
	// KeyPending is a new key whose record may not be published yet.
	KeyPending = "pending"
	// KeyActive is a key whose record was seen published, matching.
	KeyActive = "active"
	// KeyRetiring is a key a newer active key replaced; its record stays
	// published until RetireAt (mail signed with it may still be in
	// transit or be verified again), then it becomes retired.
	KeyRetiring = "retiring"
	// KeyRetired is a key no gateway signs with; its DNS record and files
	// may be removed.
	KeyRetired = "retired"
)

// StateFile is the name of a domain directory's state file.
const StateFile = "state.json"

// DefaultRotationInterval is how often a gateway asks DNS about pending
// keys, and reads the key directories again.
const DefaultRotationInterval = time.Minute

// DefaultRetireAfter is how long a replaced key's record stays published.
const DefaultRetireAfter = 7 * 24 * time.Hour

// RotationConfig is auth.dkim.rotation.
type RotationConfig struct {
	// KeysDir holds one directory per rotated signing domain.
	KeysDir string `yaml:"keys_dir"`
	// CheckInterval is how often pending keys are looked up in DNS.
	CheckInterval time.Duration `yaml:"check_interval"`
	// RetireAfter is how long a replaced key's record must stay published.
	RetireAfter time.Duration `yaml:"retire_after"`
}

// KeyState is one selector of a rotated domain in its state file.
type KeyState struct {
	Selector  string    `json:"selector"`
	Algorithm string    `json:"algorithm"`
	State     string    `json:"state"`
	Created   time.Time `json:"created"`
	Activated time.Time `json:"activated,omitzero"`
	// RetireAt is when a retiring key's record may be removed.
	RetireAt time.Time `json:"retire_at,omitzero"`
}

// DomainState is a rotated domain's state file.
type DomainState struct {
	Domain    string     `json:"domain"`
	Selectors []KeyState `json:"selectors"`
}

// DomainDir is the key directory of domain under keysDir. A domain that
// could name another directory ("..", "a/b") gets a name that does not
// exist instead.
func DomainDir(keysDir, domain string) string {
	d := normalize(domain)
	if d == "" || d[0] == '.' || strings.ContainsAny(d, "/\\\x00") {
		d = "invalid-domain"
	}
	return filepath.Join(keysDir, d)
}

// ReadDomainState reads and checks the state file of domain under keysDir.
func ReadDomainState(keysDir, domain string) (*DomainState, error) {
	path := filepath.Join(DomainDir(keysDir, domain), StateFile)
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%s does not exist (create the first key with: aupguard dkim rotate -domain %s): %w", path, domain, os.ErrNotExist)
		}
		return nil, err
	}
	var st DomainState
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	if normalize(st.Domain) != normalize(domain) {
		return nil, fmt.Errorf("%s: names domain %q, not %q", path, st.Domain, domain)
	}
	seen := map[string]bool{}
	for i, k := range st.Selectors {
		if !validSelector(k.Selector) || strings.ContainsAny(k.Selector, "/\\") {
			return nil, fmt.Errorf("%s: selectors[%d]: bad selector %q", path, i, k.Selector)
		}
		if seen[strings.ToLower(k.Selector)] {
			return nil, fmt.Errorf("%s: selector %q listed twice", path, k.Selector)
		}
		seen[strings.ToLower(k.Selector)] = true
		switch k.State {
		case KeyPending, KeyActive, KeyRetiring, KeyRetired:
		default:
			return nil, fmt.Errorf("%s: selector %q: unknown state %q (want pending, active, retiring or retired)", path, k.Selector, k.State)
		}
	}
	return &st, nil
}

// WriteDomainState replaces the state file of st.Domain under keysDir
// (atomically: a gateway reading it sees the old or the new one).
func WriteDomainState(keysDir string, st *DomainState) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(DomainDir(keysDir, st.Domain), StateFile), append(b, '\n'))
}

// KeyPath is the private key file of selector in domain's directory.
func KeyPath(keysDir, domain, selector string) string {
	return filepath.Join(DomainDir(keysDir, domain), selector+".key")
}

// rotKey is one usable key of a rotated domain.
type rotKey struct {
	KeyState
	signer crypto.Signer // as read: its Public() is compared with DNS
	key    Key           // for signing (this build's RSA backend)
}

// loadDomain reads domain's state file and the keys of every selector
// that is not retired.
func loadDomain(keysDir, domain string, kf *keyFiles) ([]rotKey, error) {
	st, err := ReadDomainState(keysDir, domain)
	if err != nil {
		return nil, err
	}
	var keys []rotKey
	for _, ks := range st.Selectors {
		if ks.State == KeyRetired {
			continue
		}
		signer, err := kf.load(KeyPath(keysDir, domain, ks.Selector))
		if err != nil {
			return nil, fmt.Errorf("selector %s: %v", ks.Selector, err)
		}
		keys = append(keys, rotKey{KeyState: ks, signer: signer,
			key: Key{Domain: normalize(domain), Selector: strings.ToLower(ks.Selector), Signer: rsaSigner(signer)}})
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%s: no key that is not retired", filepath.Join(DomainDir(keysDir, domain), StateFile))
	}
	return keys, nil
}

// Rotation follows the rotated signing domains of one key directory: it
// reads their directories again and asks DNS about their pending keys at
// every check interval, and tells the signer which key to use. It lives
// across reloads (setup.Shared) so that what it has seen is kept.
type Rotation struct {
	r       resolver.Resolver
	timeout time.Duration
	log     *slog.Logger
	clk     clock.Clock

	mu       sync.Mutex
	cfg      RotationConfig
	kf       *keyFiles
	domains  map[string]*rotatedDomain
	interval chan time.Duration // a changed check interval, for Run
}

// NewRotation returns a Rotation for cfg, asking DNS through r with the
// given timeout per question.
func NewRotation(cfg RotationConfig, r resolver.Resolver, timeout time.Duration, log *slog.Logger, clk clock.Clock) *Rotation {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if clk == nil {
		clk = clock.System{}
	}
	return &Rotation{r: r, timeout: timeout, log: log, clk: clk, cfg: cfg, kf: newKeyFiles(),
		domains: map[string]*rotatedDomain{}, interval: make(chan time.Duration, 1)}
}

// Configure applies a reloaded auth.dkim.rotation. Another keys_dir
// forgets the domains followed so far.
func (ro *Rotation) Configure(cfg RotationConfig) {
	ro.mu.Lock()
	defer ro.mu.Unlock()
	if cfg.KeysDir != ro.cfg.KeysDir {
		ro.domains = map[string]*rotatedDomain{}
	}
	if cfg.CheckInterval != ro.cfg.CheckInterval {
		select {
		case <-ro.interval:
		default:
		}
		ro.interval <- cfg.CheckInterval
	}
	ro.cfg = cfg
}

// rotatedDomain is one rotated signing domain as a gateway sees it.
type rotatedDomain struct {
	domain string
	cur    atomic.Pointer[Key] // the key signing now; nil: none usable

	mu       sync.Mutex // one refresh at a time
	keys     []rotKey
	verified map[string]bool // selector+record seen published, matching
	using    string          // verifiedKey of the signing key
}

// current returns the key to sign with.
func (d *rotatedDomain) current() (Key, bool) {
	if k := d.cur.Load(); k != nil {
		return *k, true
	}
	return Key{}, false
}

// Domain returns the followed domain, reading its directory the first
// time; an unreadable directory is an error (config validation reports
// it with the customer's place).
func (ro *Rotation) domain(name string) (*rotatedDomain, error) {
	name = normalize(name)
	ro.mu.Lock()
	defer ro.mu.Unlock()
	keys, err := loadDomain(ro.cfg.KeysDir, name, ro.kf)
	if d, ok := ro.domains[name]; ok {
		// A reload reads the directory again (no DNS question).
		d.mu.Lock()
		if err == nil {
			d.keys = keys
		}
		d.choose(ro.log)
		d.mu.Unlock()
		return d, nil
	}
	if errors.Is(err, os.ErrNotExist) {
		// The config may reach a gateway before the keys do (config
		// management): the domain is not signed until they come.
		ro.log.Warn("dkim rotation: no keys yet; mail of the domain is not signed until they are in the key directory and published", "domain", name, "err", err)
	} else if err != nil {
		return nil, err
	}
	d := &rotatedDomain{domain: name, keys: keys, verified: map[string]bool{}}
	d.choose(ro.log)
	ro.domains[name] = d
	return d, nil
}

// verifiedKey is the verified map's key: the selector and its record,
// so that a key file replaced under the same selector is checked again.
func verifiedKey(k rotKey) string {
	rec, _ := k.key.DNSRecord()
	return k.Selector + "\x00" + rec
}

// choose sets the signing key: the newest that is active in the state
// file or seen published here. Retiring keys are not signed with.
func (d *rotatedDomain) choose(log *slog.Logger) {
	var pick *rotKey
	for i := len(d.keys) - 1; i >= 0; i-- {
		k := &d.keys[i]
		if k.State == KeyActive || (k.State == KeyPending && d.verified[verifiedKey(*k)]) {
			pick = k
			break
		}
	}
	prev := d.cur.Load()
	switch {
	case pick == nil && prev != nil:
		d.cur.Store(nil)
		d.using = ""
		log.Error("dkim rotation: no usable key: mail of the domain is not signed", "domain", d.domain, "previous_selector", prev.Selector)
	case pick == nil:
		return
	case d.using != verifiedKey(*pick):
		k := pick.key
		d.cur.Store(&k)
		d.using = verifiedKey(*pick)
		from := ""
		if prev != nil {
			from = prev.Selector
		}
		log.Info("dkim rotation: signing with selector", "domain", d.domain, "selector", k.Selector, "previous_selector", from, "state", pick.State)
	}
}

// Run checks the followed domains at every check interval until ctx is
// done (setup.Runner). The first check is at once.
func (ro *Rotation) Run(ctx context.Context) {
	ro.mu.Lock()
	iv := ro.cfg.CheckInterval
	ro.mu.Unlock()
	if iv <= 0 {
		iv = DefaultRotationInterval
	}
	for {
		ro.Check(ctx)
		select {
		case <-ctx.Done():
			return
		case n := <-ro.interval:
			if n > 0 {
				iv = n
			}
		case <-time.After(iv):
		}
	}
}

// Check reads every followed domain's directory again and looks its
// pending keys (those newer than the signing one) up in DNS; a key whose
// published record matches becomes the signing key.
func (ro *Rotation) Check(ctx context.Context) {
	ro.mu.Lock()
	doms := make([]*rotatedDomain, 0, len(ro.domains))
	for _, d := range ro.domains {
		doms = append(doms, d)
	}
	dir, kf := ro.cfg.KeysDir, ro.kf
	ro.mu.Unlock()
	for _, d := range doms {
		if ctx.Err() != nil {
			return
		}
		ro.refresh(ctx, d, dir, kf)
	}
}

func (ro *Rotation) refresh(ctx context.Context, d *rotatedDomain, dir string, kf *keyFiles) {
	d.mu.Lock()
	defer d.mu.Unlock()
	keys, err := loadDomain(dir, d.domain, kf)
	if errors.Is(err, os.ErrNotExist) && len(d.keys) == 0 {
		ro.log.Debug("dkim rotation: no keys yet", "domain", d.domain)
	} else if err != nil {
		// A half-synced or broken directory never stops signing: the keys
		// read before stay.
		ro.log.Error("dkim rotation: key directory unreadable; keeping the keys read before", "domain", d.domain, "err", err)
	} else {
		d.keys = keys
	}
	cur := d.cur.Load()
	for i := len(d.keys) - 1; i >= 0; i-- {
		k := d.keys[i]
		if cur != nil && k.key.Selector == cur.Selector {
			break // only keys newer than the signing one
		}
		if k.State != KeyPending || d.verified[verifiedKey(k)] {
			continue
		}
		kr := checkKey(ctx, ro.r, Key{Domain: d.domain, Selector: k.Selector, Signer: k.signer}, ro.timeout)
		switch kr.State {
		case "published":
			d.verified[verifiedKey(k)] = true
			ro.log.Info("dkim rotation: published record matches the key", "domain", d.domain, "selector", k.Selector)
		case "mismatch":
			ro.log.Warn("dkim rotation: the published record does not match the key; not switching", "domain", d.domain, "selector", k.Selector, "err", kr.Err)
		case "error":
			ro.log.Warn("dkim rotation: DNS lookup failed; will ask again", "domain", d.domain, "selector", k.Selector, "err", kr.Err)
		default:
			ro.log.Debug("dkim rotation: record not published yet", "domain", d.domain, "selector", k.Selector)
		}
	}
	d.choose(ro.log)
}

// Published looks every non-retired key of domain up in DNS, by selector:
// "published", "missing", "mismatch" or "error" (with the reason).
func Published(ctx context.Context, r resolver.Resolver, keysDir, domain string, timeout time.Duration) (map[string]KeyReport, error) {
	keys, err := loadDomain(keysDir, domain, newKeyFiles())
	if err != nil {
		return nil, err
	}
	out := map[string]KeyReport{}
	for _, k := range keys {
		out[k.Selector] = checkKey(ctx, r, Key{Domain: normalize(domain), Selector: k.Selector, Signer: k.signer}, timeout)
	}
	return out, nil
}

// Advance moves st's states on from what DNS shows (reports by selector,
// from Published) at now: the newest pending key whose record is
// published becomes active, the keys active before it retiring until
// now+retireAfter, and retiring keys past that time retired. It returns
// one line per change.
func Advance(st *DomainState, reports map[string]KeyReport, now time.Time, retireAfter time.Duration) []string {
	var changes []string
	newest := -1
	for i := len(st.Selectors) - 1; i >= 0; i-- {
		k := st.Selectors[i]
		if k.State == KeyActive || (k.State == KeyPending && reports[k.Selector].State == "published") {
			newest = i
			break
		}
	}
	for i := range st.Selectors {
		k := &st.Selectors[i]
		switch {
		case i == newest && k.State == KeyPending:
			k.State, k.Activated = KeyActive, now
			changes = append(changes, fmt.Sprintf("%s: pending -> active (its record is published and matches the key)", k.Selector))
		case newest >= 0 && i < newest && (k.State == KeyActive || k.State == KeyPending):
			was := k.State
			k.State, k.RetireAt = KeyRetiring, now.Add(retireAfter)
			changes = append(changes, fmt.Sprintf("%s: %s -> retiring (keep its DNS record until %s)", k.Selector, was, k.RetireAt.UTC().Format(time.RFC3339)))
		case k.State == KeyRetiring && !now.Before(k.RetireAt):
			k.State = KeyRetired
			changes = append(changes, fmt.Sprintf("%s: retiring -> retired (remove its DNS record %s._domainkey.%s and its files)", k.Selector, k.Selector, st.Domain))
		}
	}
	return changes
}

// rotationOf returns the Rotation of cfg: the long-lived one in shared
// (a daemon), configured anew, or a one-shot one (nil shared).
func rotationOf(get func(string, func() any) any, cfg RotationConfig, r resolver.Resolver, timeout time.Duration, log *slog.Logger, clk clock.Clock) *Rotation {
	if get == nil {
		return NewRotation(cfg, r, timeout, log, clk)
	}
	ro, _ := get("auth.dkim.rotation", func() any { return NewRotation(cfg, r, timeout, log, clk) }).(*Rotation)
	ro.Configure(cfg)
	return ro
}
