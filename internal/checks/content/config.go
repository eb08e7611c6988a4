package content

import (
	"net/url"
	"strings"
	"time"

	"github.com/aupguard/aupguard/internal/engine/config"
)

// Defaults of the content: section.
const (
	// DefaultTimeout bounds each exchange with an engine (a write of a
	// body chunk, the wait for the verdict).
	DefaultTimeout = 10 * time.Second
	// DefaultMaxConcurrent is the number of messages scanned at once by
	// one engine; a message that finds no free slot within the timeout
	// gets the check's on_error outcome.
	DefaultMaxConcurrent = 16
	// DefaultStreamMaxLength is clamd's own default StreamMaxLength
	// (clamd.conf(5)): 25 MB (Debian's clamd.conf keeps it).
	DefaultStreamMaxLength = 25 << 20
	// DefaultSpamHold and DefaultSpamReject are rspamd's own default
	// action thresholds for "add header" (6) and "reject" (15).
	DefaultSpamHold   = 6.0
	DefaultSpamReject = 15.0
)

// Config is the content: section, which this package owns: where the
// scanning engines listen and how their answers map to actions. An engine
// without an address is off: its check asks for no body and costs nothing.
type Config struct {
	Clamd  ClamdConfig  `yaml:"clamd"`
	Rspamd RspamdConfig `yaml:"rspamd"`
	URLs   URLsConfig   `yaml:"urls"`
	// Customers override the spam thresholds per customer id.
	Customers map[string]CustomerConfig `yaml:"customers,omitempty"`
}

// ClamdConfig is the malware check's clamd.
type ClamdConfig struct {
	// Address is clamd's socket: "unix:/run/clamav/clamd.ctl" (clamd's
	// LocalSocket) or "tcp:127.0.0.1:3310" (TCPSocket); empty: off.
	Address string `yaml:"address"`
	// Timeout bounds each write of the stream and the wait for the verdict.
	Timeout time.Duration `yaml:"timeout"`
	// MaxConcurrent is the number of messages streamed to clamd at once
	// (keep it at most clamd's MaxThreads).
	MaxConcurrent int `yaml:"max_concurrent"`
	// StreamMaxLength must equal clamd's StreamMaxLength (bytes): a
	// message above it is not sent whole and gets malware_not_scanned.
	StreamMaxLength int64 `yaml:"stream_max_length"`
}

// RspamdConfig is the spam_score check's rspamd.
type RspamdConfig struct {
	// URL is rspamd's normal worker, e.g. http://127.0.0.1:11333 (the
	// check posts to its /checkv2); empty: off.
	URL string `yaml:"url"`
	// Password is sent as the Password header when set (rspamd's
	// worker password; a normal worker usually needs none).
	Password string `yaml:"password,omitempty"`
	// Timeout bounds the whole scan of one message.
	Timeout time.Duration `yaml:"timeout"`
	// MaxConcurrent is the number of messages scanned at once.
	MaxConcurrent int `yaml:"max_concurrent"`
	// Hold and Reject are the score thresholds of spam_score_hold and
	// spam_score_reject.
	Hold   float64 `yaml:"hold"`
	Reject float64 `yaml:"reject"`
}

// URLsConfig is the listed_url check's URI blocklists (package links).
type URLsConfig struct {
	// Zones are the lists asked, in order; none: the check is off.
	Zones []URLZone `yaml:"zones"`
	// MaxLookups bounds the DNS lookups per message (default 20).
	MaxLookups int `yaml:"max_lookups"`
	// Concurrency is how many lookups of one message run at once (4).
	Concurrency int `yaml:"concurrency"`
	// Timeout bounds all the lookups of one message (3s).
	Timeout time.Duration `yaml:"timeout"`
	// MaxHosts bounds the unique hosts kept per message (50).
	MaxHosts int `yaml:"max_hosts"`
	// MaxTextBytes bounds the decoded text examined per message (1 MiB).
	MaxTextBytes int64 `yaml:"max_text_bytes"`
}

// URLZone is one URI blocklist: its zone and how its answers read (dbl,
// surbl, uribl, ip); mask picks the bits of surbl and uribl answers that
// count.
type URLZone struct {
	Zone string `yaml:"zone"`
	Kind string `yaml:"kind"`
	Mask uint8  `yaml:"mask,omitempty"`
}

// CustomerConfig is one customer's own spam thresholds; unset fields
// inherit.
type CustomerConfig struct {
	SpamHold   *float64 `yaml:"spam_hold,omitempty"`
	SpamReject *float64 `yaml:"spam_reject,omitempty"`
}

// Section is the content: section, decoded and validated here.
var Section = config.SectionSpec{Key: "content", Decode: decodeConfig}

// DefaultConfig is the content: section when the config leaves it out:
// both engines off.
func DefaultConfig() *Config {
	c := &Config{}
	c.defaults()
	return c
}

func (c *Config) defaults() {
	if c.Clamd.Timeout == 0 {
		c.Clamd.Timeout = DefaultTimeout
	}
	if c.Clamd.MaxConcurrent == 0 {
		c.Clamd.MaxConcurrent = DefaultMaxConcurrent
	}
	if c.Clamd.StreamMaxLength == 0 {
		c.Clamd.StreamMaxLength = DefaultStreamMaxLength
	}
	if c.Rspamd.Timeout == 0 {
		c.Rspamd.Timeout = DefaultTimeout
	}
	if c.Rspamd.MaxConcurrent == 0 {
		c.Rspamd.MaxConcurrent = DefaultMaxConcurrent
	}
	if c.Rspamd.Hold == 0 {
		c.Rspamd.Hold = DefaultSpamHold
	}
	if c.Rspamd.Reject == 0 {
		c.Rspamd.Reject = DefaultSpamReject
	}
}

// Thresholds returns the spam thresholds of customer id.
func (c *Config) Thresholds(id string) (hold, reject float64) {
	hold, reject = c.Rspamd.Hold, c.Rspamd.Reject
	if o, ok := c.Customers[id]; ok {
		if o.SpamHold != nil {
			hold = *o.SpamHold
		}
		if o.SpamReject != nil {
			reject = *o.SpamReject
		}
	}
	return hold, reject
}

// decodeConfig decodes the content: section over its defaults and
// validates it; errors are placed through s.
func decodeConfig(s *config.Section) any {
	c := DefaultConfig()
	s.Decode(c)
	c.defaults()
	if a := c.Clamd.Address; a != "" {
		network, addr := clamdNetwork(a)
		switch {
		case network == "unix" && !strings.HasPrefix(addr, "/"):
			s.Errorf("content.clamd.address", "want unix:/absolute/path or tcp:host:port, got %q", a)
		case network == "tcp" && !strings.Contains(addr, ":"):
			s.Errorf("content.clamd.address", "want tcp:host:port, got %q", a)
		}
	}
	s.Duration("content.clamd.timeout", c.Clamd.Timeout)
	s.Positive("content.clamd.max_concurrent", c.Clamd.MaxConcurrent)
	if c.Clamd.StreamMaxLength < 1024 {
		s.Errorf("content.clamd.stream_max_length", "want clamd's StreamMaxLength in bytes (at least 1024), got %d", c.Clamd.StreamMaxLength)
	}
	if u := c.Rspamd.URL; u != "" {
		p, err := url.Parse(u)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			s.Errorf("content.rspamd.url", "want rspamd's worker URL such as http://127.0.0.1:11333, got %q", u)
		}
	}
	if _, err := newLists(c.URLs, nopResolver{}); err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			s.Errorf("content.urls", "%s", line)
		}
	}
	s.Duration("content.rspamd.timeout", c.Rspamd.Timeout)
	s.Positive("content.rspamd.max_concurrent", c.Rspamd.MaxConcurrent)
	thresholds(s, "content.rspamd.hold", "content.rspamd.reject", c.Rspamd.Hold, c.Rspamd.Reject)
	ids := map[string]bool{}
	for _, cu := range s.Config.Customers {
		ids[cu.ID] = true
	}
	for id := range c.Customers {
		if !ids[id] {
			s.Errorf("content.customers."+id, "no customer %q in customers", id)
		}
		h, r := c.Thresholds(id)
		thresholds(s, "content.customers."+id+".spam_hold", "content.customers."+id+".spam_reject", h, r)
	}
	return c
}

// thresholds reports a hold score that is not positive, at holdPath, and
// a reject score below it, at rejectPath.
func thresholds(s *config.Section, holdPath, rejectPath string, hold, reject float64) {
	if hold <= 0 {
		s.Errorf(holdPath, "want a score above 0, got %v", hold)
	}
	if reject < hold {
		s.Errorf(rejectPath, "reject (%v) is below hold (%v)", reject, hold)
	}
}

// ConfigOf returns the content settings of cfg (its defaults when the
// config has no content: section).
func ConfigOf(cfg *config.Config) (*Config, error) {
	v, err := cfg.SectionOf(Section)
	c, _ := v.(*Config)
	if c == nil {
		c = DefaultConfig()
	}
	return c, err
}
