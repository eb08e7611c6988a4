package ratelimit

import (
	"time"

	"github.com/aupguard/aupguard/internal/engine/config"
)

// Defaults of spike detection.
const (
	// DefaultSpikeWindow is the short window compared with the baseline.
	DefaultSpikeWindow = 10 * time.Minute
	// DefaultSpikeAlpha is the weight of the newest week in the baseline
	// (an exponentially weighted moving average per hour of the week).
	DefaultSpikeAlpha = 0.3
	// DefaultSpikeFactor: a short window above factor × baseline is a spike.
	DefaultSpikeFactor = 5.0
	// DefaultSpikeFloor is the message count per short window below which
	// nothing is a spike, so that small senders are never flagged.
	DefaultSpikeFloor = 100
	// DefaultSpikeBaseline is the hourly message count assumed for an hour
	// of the week a customer has no history for (new customers).
	DefaultSpikeBaseline = 60
)

// Config is the spike: section of the config, which this package owns:
// spike detection (finding volume_spike of check rate_limit). Per
// customer, the hourly message count of each hour of the week is learnt
// as an exponentially weighted moving average, and the count of the last
// Window is compared with factor × that baseline (the thresholds are
// limits: spike_factor, spike_floor and spike_baseline of defaults.limits
// and customers[].limits; see doc.go).
//
// The volume limits themselves (config.Limits) are part of the core
// defaults: and customers: sections, validated with them (the live
// directory changes customers without this package); this package
// resolves them per customer (settings.go).
type Config struct {
	// Enabled turns spike detection on (default true).
	Enabled bool `yaml:"enabled"`
	// Window is the short window (default 10m; whole minutes, 1m to 1h;
	// 0 keeps the default).
	Window time.Duration `yaml:"window"`
	// Alpha is the weight of the newest week in the average, in (0, 1]
	// (default 0.3: a change of habit is learnt in about three weeks; 0
	// keeps the default).
	Alpha float64 `yaml:"alpha"`
}

// Section is the spike: section, decoded and validated here.
var Section = config.SectionSpec{Key: "spike", Decode: decodeConfig}

// DefaultConfig is the spike: section when the config leaves it out.
func DefaultConfig() *Config {
	return &Config{Enabled: true, Window: DefaultSpikeWindow, Alpha: DefaultSpikeAlpha}
}

// decodeConfig decodes the spike: section over its defaults and validates
// it; errors are placed through s.
func decodeConfig(s *config.Section) any {
	c := DefaultConfig()
	s.Decode(c)
	// An explicit 0 keeps the default, as it always has.
	if c.Window == 0 {
		c.Window = DefaultSpikeWindow
	}
	if c.Alpha == 0 {
		c.Alpha = DefaultSpikeAlpha
	}
	if c.Window < time.Minute || c.Window > time.Hour || c.Window%time.Minute != 0 {
		s.Errorf("spike.window", "want whole minutes between 1m and 1h, got %s", c.Window)
	}
	if c.Alpha <= 0 || c.Alpha > 1 {
		s.Errorf("spike.alpha", "want a weight in (0, 1], got %g", c.Alpha)
	}
	return c
}

// ConfigOf returns the spike: section of cfg (decoded at config.Parse, or
// now for a config parsed without this package's section).
func ConfigOf(cfg *config.Config) (*Config, error) {
	v, err := cfg.SectionOf(Section)
	c, _ := v.(*Config)
	if c == nil {
		c = DefaultConfig()
	}
	return c, err
}
