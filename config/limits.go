package config

// Limits are volume limits; a nil field is unlimited (or, in a customer,
// inherits the default).
type Limits struct{}

// SpikeConfig configures spike detection against a customer's baseline.
type SpikeConfig struct{}

func (l *Limits) validate(v *validator, p string) {}
func (s *SpikeConfig) defaults()                  {}
func (s *SpikeConfig) validate(v *validator)      {}
