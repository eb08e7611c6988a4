package standing

import (
	"time"

	"github.com/aupguard/aupguard/internal/engine/config"
)

// Defaults of the standing: section.
const (
	// DefaultRefresh is how old a gateway's copy of the stops may be
	// before it reads the store's generation again (Redis).
	DefaultRefresh = 250 * time.Millisecond
	// MaxRefresh bounds standing.refresh: a stop takes effect on every
	// gateway within a second.
	MaxRefresh = time.Second
	// DefaultContentThreshold is the number of content findings in the
	// window that flags a sender.
	DefaultContentThreshold = 3
	// DefaultContentCustomerThreshold is the number of findings of all
	// of a customer's logins together that flags the whole customer.
	DefaultContentCustomerThreshold = 10
	// DefaultContentWindow is the window they are counted in.
	DefaultContentWindow = time.Hour
)

// Config is the standing: section, which this package owns.
type Config struct {
	// Refresh is how old a gateway's copy of the stops may be (Redis):
	// at most one generation read per refresh per gateway.
	Refresh time.Duration `yaml:"refresh"`
	// Content is the content flag.
	Content ContentConfig `yaml:"content"`
}

// ContentConfig is the automatic flag raised by content findings
// (malware_found, listed_url, spam_score at hold or above).
type ContentConfig struct {
	// Enabled turns the flag on (default true; the content checks are
	// off until their engines are configured, so it counts nothing then).
	Enabled *bool `yaml:"enabled"`
	// Threshold is the number of findings of one login in Window that
	// flags the login, and of a customer's mail sent without a login
	// (identified by its network) that flags the customer.
	Threshold int `yaml:"threshold"`
	// CustomerThreshold is the number of findings of a customer, all its
	// logins together, that flags the whole customer.
	CustomerThreshold int `yaml:"customer_threshold"`
	// Window is how long a finding counts.
	Window time.Duration `yaml:"window"`
	// Action is the flag's stop action: hold (default), defer or reject.
	Action string `yaml:"action"`
}

// On reports whether the content flag is on.
func (c ContentConfig) On() bool { return c.Enabled == nil || *c.Enabled }

// Section is the standing: section, decoded and validated here.
var Section = config.SectionSpec{Key: "standing", Decode: decodeConfig}

// DefaultConfig is the standing: section when the config leaves it out.
func DefaultConfig() *Config {
	c := &Config{}
	c.defaults()
	return c
}

func (c *Config) defaults() {
	if c.Refresh == 0 {
		c.Refresh = DefaultRefresh
	}
	if c.Content.Threshold == 0 {
		c.Content.Threshold = DefaultContentThreshold
	}
	if c.Content.CustomerThreshold == 0 {
		c.Content.CustomerThreshold = DefaultContentCustomerThreshold
	}
	if c.Content.Window == 0 {
		c.Content.Window = DefaultContentWindow
	}
	if c.Content.Action == "" {
		c.Content.Action = string(ActionHold)
	}
}

func decodeConfig(s *config.Section) any {
	c := DefaultConfig()
	s.Decode(c)
	c.defaults()
	s.Duration("standing.refresh", c.Refresh)
	if c.Refresh > MaxRefresh {
		s.Errorf("standing.refresh", "at most %s (a stop must take effect on every gateway within a second), got %s", MaxRefresh, c.Refresh)
	}
	if c.Refresh < 10*time.Millisecond {
		s.Errorf("standing.refresh", "at least 10ms, got %s", c.Refresh)
	}
	s.Positive("standing.content.threshold", c.Content.Threshold)
	s.Positive("standing.content.customer_threshold", c.Content.CustomerThreshold)
	s.Duration("standing.content.window", c.Content.Window)
	if _, err := ParseAction(c.Content.Action); err != nil {
		s.Errorf("standing.content.action", "%v", err)
	}
	return c
}

// ConfigOf returns the standing settings of cfg (its defaults when the
// config has no standing: section).
func ConfigOf(cfg *config.Config) (*Config, error) {
	v, err := cfg.SectionOf(Section)
	c, _ := v.(*Config)
	if c == nil {
		c = DefaultConfig()
	}
	return c, err
}
