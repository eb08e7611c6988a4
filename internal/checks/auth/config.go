package auth

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/aupguard/aupguard/internal/engine/config"
)

// DefaultDKIMMaxSignatures is how many DKIM signatures of one message are
// verified; the rest are ignored (RFC 6376 §6.1 lets a verifier limit them).
const DefaultDKIMMaxSignatures = 5

// DefaultSignedHeaders are the header fields a gateway DKIM signature
// covers when present (RFC 6376 §5.4.1 recommends the first ones; the
// List-Unsubscribe fields must be signed for one-click unsubscribe, RFC 8058 §4).
var DefaultSignedHeaders = []string{
	"From", "Reply-To", "Sender", "To", "Cc", "Subject", "Date", "Message-ID",
	"In-Reply-To", "References", "MIME-Version", "Content-Type",
	"Content-Transfer-Encoding", "List-Unsubscribe", "List-Unsubscribe-Post",
	"List-Id", "Feedback-ID",
}

// Config is the auth: section of the config, which this package owns: the
// provider-wide settings of spf, dkim, dmarc and dkim_sign. The customers'
// own keys (require_alignment, dkim) sit in their entries
// (config.CustomerAuth) and are validated by CustomerSection, which
// also reads their key files, once (Config keeps what it read).
type Config struct {
	DKIM    DKIMVerifyConfig `yaml:"dkim"`
	DMARC   DMARCConfig      `yaml:"dmarc"`
	Signing SigningConfig    `yaml:"signing"`

	// keys are the customers' key files read while the customers were
	// validated, by path; the signer takes its keys from here.
	keys *keyFiles
}

// DKIMVerifyConfig tunes the verification of customers' own signatures.
type DKIMVerifyConfig struct {
	// MaxSignatures is how many signatures of one message are verified.
	MaxSignatures int `yaml:"max_signatures"`
	// Rotation is where rotated signing keys live and how they are
	// followed (rotation.go).
	Rotation RotationConfig `yaml:"rotation"`
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

// Section is the auth: section, decoded and validated here, with the
// authentication keys of every customer entry (CustomerSection).
var Section = config.SectionSpec{Key: "auth", Decode: decodeConfig}

// CustomerSection is the family's part of a customer entry: its keys
// (require_alignment, dkim) are validated and its key files read when the
// customer is validated; what the checks read per customer is filed as
// CustomerSettings.
var CustomerSection = config.CustomerSection{Family: "auth", Decode: decodeCustomer, Rebuilds: signs}

// signs reports whether a customer's change touches the signer's keys,
// which the signer loads when it is built.
func signs(old, new *config.Customer) bool {
	return old != nil && len(old.DKIM) > 0 || new != nil && len(new.DKIM) > 0
}

// CustomerSettings are a customer's own authentication settings, as the
// checks read them from the identified customer.
type CustomerSettings struct {
	// RequireAlignment overrides auth.dmarc.require_alignment (nil: not).
	RequireAlignment *bool
}

func decodeCustomer(s *config.Section, p string, c *config.Customer) any {
	checkCustomer(s, s.Config.Section(Section.Key), p, c)
	if c.RequireAlignment == nil {
		return nil
	}
	return CustomerSettings{RequireAlignment: c.RequireAlignment}
}

// DefaultConfig is the auth: section when the config leaves it out.
func DefaultConfig() *Config {
	return &Config{
		DKIM: DKIMVerifyConfig{MaxSignatures: DefaultDKIMMaxSignatures,
			Rotation: RotationConfig{CheckInterval: DefaultRotationInterval, RetireAfter: DefaultRetireAfter}},
		Signing: SigningConfig{
			Headers:  append([]string(nil), DefaultSignedHeaders...),
			Oversign: []string{"From"},
		},
		keys: newKeyFiles(),
	}
}

// decodeConfig decodes the auth: section over its defaults and validates
// it; errors are placed through s.
func decodeConfig(s *config.Section) any {
	a := DefaultConfig()
	s.Decode(a)
	// An explicit 0 (or null) means the default, as it always has.
	if a.DKIM.MaxSignatures == 0 {
		a.DKIM.MaxSignatures = DefaultDKIMMaxSignatures
	}
	if a.Signing.Headers == nil {
		a.Signing.Headers = append([]string(nil), DefaultSignedHeaders...)
	}
	if a.Signing.Oversign == nil {
		a.Signing.Oversign = []string{"From"}
	}
	s.Positive("auth.dkim.max_signatures", a.DKIM.MaxSignatures)
	rc := &a.DKIM.Rotation
	if rc.CheckInterval == 0 {
		rc.CheckInterval = DefaultRotationInterval
	}
	if rc.RetireAfter == 0 {
		rc.RetireAfter = DefaultRetireAfter
	}
	s.Duration("auth.dkim.rotation.check_interval", rc.CheckInterval)
	s.Duration("auth.dkim.rotation.retire_after", rc.RetireAfter)
	if rc.CheckInterval > 0 && rc.CheckInterval < time.Second {
		s.Errorf("auth.dkim.rotation.check_interval", "%s is too short (want at least 1s)", rc.CheckInterval)
	}
	if rc.RetireAfter > 0 && rc.RetireAfter < 24*time.Hour {
		s.Errorf("auth.dkim.rotation.retire_after", "%s is too short: mail signed with the old key may still be in queues or be verified again (want at least 24h)", rc.RetireAfter)
	}
	if rc.KeysDir != "" && !filepath.IsAbs(rc.KeysDir) {
		s.Errorf("auth.dkim.rotation.keys_dir", "%q: want an absolute path", rc.KeysDir)
	}
	s.Duration("auth.signing.expiration", a.Signing.Expiration)
	if a.Signing.Expiration > 0 && a.Signing.Expiration < time.Hour {
		s.Errorf("auth.signing.expiration", "%s is too short: mail may sit in a queue for days (want 0 or at least 1h)", a.Signing.Expiration)
	}
	from := false
	for i, h := range a.Signing.Headers {
		p := fmt.Sprintf("auth.signing.headers[%d]", i)
		if !config.ValidFieldName(h) {
			s.Errorf(p, "bad header field name %q", h)
		}
		if strings.EqualFold(h, "From") {
			from = true
		}
		if strings.EqualFold(h, "DKIM-Signature") || strings.EqualFold(h, "Received") || strings.EqualFold(h, "Return-Path") {
			s.Errorf(p, "%s must not be signed: it is added or changed in transit", h)
		}
	}
	if !from {
		// RFC 6376 §5.4: the From header field MUST be signed.
		s.Errorf("auth.signing.headers", "must include From (RFC 6376 §5.4)")
	}
	for i, h := range a.Signing.Oversign {
		if !config.ValidFieldName(h) {
			s.Errorf(fmt.Sprintf("auth.signing.oversign[%d]", i), "bad header field name %q", h)
		}
	}
	return a
}

// checkCustomer validates the authentication keys of the customer entry
// at p and reads its key files into the section's settings, so that the
// signer does not read them again.
func checkCustomer(s *config.Section, settings any, p string, c *config.Customer) {
	a, _ := settings.(*Config)
	if a == nil {
		a = DefaultConfig()
	}
	seen := map[string]int{}
	for i, k := range c.DKIM {
		kp := fmt.Sprintf("%s.dkim[%d]", p, i)
		if k.Domain == "" {
			s.Errorf(kp+".domain", "signing domain missing")
		} else if strings.HasPrefix(k.Domain, "*") {
			s.Errorf(kp+".domain", "a signing domain is one domain, not a pattern: %q", k.Domain)
		} else {
			s.DomainPattern(kp+".domain", k.Domain)
			d := strings.ToLower(strings.TrimSuffix(k.Domain, "."))
			if j, dup := seen[d]; dup {
				s.Errorf(kp+".domain", "domain %q already has a key in %s.dkim[%d]", k.Domain, p, j)
			}
			seen[d] = i
		}
		if k.Rotated {
			checkRotated(s, a, kp, k)
			continue
		}
		if !validSelector(k.Selector) {
			s.Errorf(kp+".selector", "bad selector %q: want DNS labels (letters, digits, '-', dots)", k.Selector)
		}
		if k.KeyFile == "" {
			s.Errorf(kp+".key_file", "key_file missing")
		} else if _, err := a.keys.load(k.KeyFile); err != nil {
			s.Errorf(kp+".key_file", "%v", err)
		}
	}
}

// checkRotated validates a rotated key entry at kp: no selector or key
// file of its own, a key directory configured, and the domain's directory
// readable with a usable key.
func checkRotated(s *config.Section, a *Config, kp string, k config.DKIMKey) {
	if k.Selector != "" || k.KeyFile != "" {
		s.Errorf(kp+".rotated", "a rotated key takes its selector and key file from auth.dkim.rotation.keys_dir; remove selector and key_file")
	}
	dir := a.DKIM.Rotation.KeysDir
	if dir == "" {
		s.Errorf(kp+".rotated", "auth.dkim.rotation.keys_dir is not set")
		return
	}
	if k.Domain == "" || strings.ContainsAny(k.Domain, "/\\") || strings.HasPrefix(k.Domain, ".") {
		return // reported with the domain
	}
	if _, err := loadDomain(dir, k.Domain, a.keys); errors.Is(err, os.ErrNotExist) {
		s.Warnf(kp+".rotated", "no keys yet: mail of %s is not signed until they are in the key directory and published (%v)", k.Domain, err)
	} else if err != nil {
		s.Errorf(kp+".rotated", "%v", err)
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

// ConfigOf returns the auth: section of cfg (decoded at config.Parse, or
// now for a config parsed without this package's section).
func ConfigOf(cfg *config.Config) (*Config, error) {
	v, err := cfg.SectionOf(Section)
	a, _ := v.(*Config)
	if a == nil {
		a = DefaultConfig()
	}
	return a, err
}
