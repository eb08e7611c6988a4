package config

import "github.com/aupguard/aupguard/internal/sysmon"

// RuntimeConfig is the Go runtime's tuning of serve. The process reads it
// at start only (a reload does not change it).
type RuntimeConfig struct {
	// Sysmon is awake (default) or default. With awake, serve runs with
	// GODEBUG=schedtrace=2147483647: set in the service's environment (the
	// systemd unit and the container image do), or else serve executes
	// itself again with it at start. A GODEBUG that already names
	// schedtrace is the operator's and stands either way.
	Sysmon string `yaml:"sysmon"`
}

func (r *RuntimeConfig) defaults() {
	if r.Sysmon == "" {
		r.Sysmon = sysmon.Awake
	}
}

func (r *RuntimeConfig) validate(v *validator) {
	if r.Sysmon != sysmon.Awake && r.Sysmon != sysmon.Default {
		v.errf("runtime.sysmon", "want awake or default, got %q", r.Sysmon)
	}
}
