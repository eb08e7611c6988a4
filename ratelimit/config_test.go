package ratelimit

import (
	"strings"
	"testing"
	"time"

	"github.com/aupguard/aupguard/internal/engine/config"
)

// TestConfigValidation: the spike: section and the limits are refused
// with their path and file:line, and every error of a file is reported.
func TestConfigValidation(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{"window too short", "spike: {window: 30s}\n", []string{"t.yaml:1: spike.window: want whole minutes between 1m and 1h, got 30s"}},
		{"window too long", "spike:\n  window: 2h\n", []string{"t.yaml:2: spike.window: want whole minutes between 1m and 1h, got 2h0m0s"}},
		{"window not whole minutes", "spike:\n  enabled: true\n  window: 90s\n", []string{"t.yaml:3: spike.window: want whole minutes between 1m and 1h, got 1m30s"}},
		{"window negative", "spike: {window: -10m}\n", []string{"spike.window: want whole minutes between 1m and 1h, got -10m0s"}},
		{"alpha above 1", "spike:\n  alpha: 1.5\n", []string{"t.yaml:2: spike.alpha: want a weight in (0, 1], got 1.5"}},
		{"alpha negative", "spike: {alpha: -0.1}\n", []string{"spike.alpha: want a weight in (0, 1], got -0.1"}},
		{"both", "spike:\n  window: 0s5ms\n  alpha: 2\n", []string{"t.yaml:2: spike.window", "t.yaml:3: spike.alpha"}},
		{"misspelled key", "spike:\n  windw: 5m\n", []string{`t.yaml:2: spike.windw: unknown key "windw" (did you mean window?)`}},
		{"wrong type", "spike:\n  enabled: maybe\n", []string{"t.yaml:2: spike.enabled:"}},
		{"misspelled section", "spkie: {enabled: false}\n", []string{`t.yaml:1: spkie: unknown key (did you mean spike?)`}},
		{"negative limit", "defaults:\n  limits:\n    messages_per_hour: -1\n", []string{"t.yaml:3: defaults.limits.messages_per_hour: must not be negative (0 is unlimited), got -1"}},
		{"spike factor below 1", "defaults:\n  limits: {spike_factor: 0.5}\n", []string{"defaults.limits.spike_factor: want a factor of at least 1 (0 keeps the default), got 0.5"}},
		{"customer spike floor", "customers:\n  - id: acme\n    networks: [192.0.2.1]\n    domains: [acme.example]\n    limits: {spike_floor: -3}\n",
			[]string{"t.yaml:5: customers[0].limits.spike_floor: must not be negative (0 is unlimited), got -3"}},
		{"bad size", "defaults:\n  limits:\n    message_size: 10 parsecs\n", []string{"t.yaml:3: defaults.limits.message_size:", "bad size"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := config.Parse([]byte(tt.yaml), "t.yaml", config.Options{Sections: []config.SectionSpec{Section}})
			if err == nil {
				t.Fatalf("accepted, want %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q, want %q", err, w)
				}
			}
		})
	}
}

// TestConfigDefaults: a config without spike: gets the documented
// defaults, an explicit 0 keeps them, and what is set is typed.
func TestConfigDefaults(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want Config
	}{
		{"absent", "log: {format: json}\n", Config{Enabled: true, Window: 10 * time.Minute, Alpha: 0.3}},
		{"empty", "spike:\n", Config{Enabled: true, Window: 10 * time.Minute, Alpha: 0.3}},
		{"zeros keep the defaults", "spike: {window: 0s, alpha: 0}\n", Config{Enabled: true, Window: 10 * time.Minute, Alpha: 0.3}},
		{"off", "spike: {enabled: false}\n", Config{Enabled: false, Window: 10 * time.Minute, Alpha: 0.3}},
		{"null keeps enabled", "spike: {enabled: null}\n", Config{Enabled: true, Window: 10 * time.Minute, Alpha: 0.3}},
		{"set", "spike: {enabled: true, window: 1h, alpha: 1}\n", Config{Enabled: true, Window: time.Hour, Alpha: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Parsed with the section (as the gateway does), and without it
			// (decoded on demand by ConfigOf): the same settings.
			for _, opts := range []config.Options{{Sections: []config.SectionSpec{Section}}, {}} {
				cfg, err := config.Parse([]byte(tt.yaml), "t.yaml", opts)
				if err != nil {
					t.Fatal(err)
				}
				got, err := ConfigOf(cfg)
				if err != nil {
					t.Fatal(err)
				}
				if *got != tt.want {
					t.Errorf("sections %d: got %+v, want %+v", len(opts.Sections), *got, tt.want)
				}
				s, err := SettingsFor(cfg, "anyone")
				if err != nil {
					t.Fatal(err)
				}
				if s.SpikeEnabled != tt.want.Enabled || s.SpikeWindow != tt.want.Window || s.Spike.Alpha != tt.want.Alpha ||
					s.Spike.Factor != DefaultSpikeFactor || s.Spike.Floor != DefaultSpikeFloor || s.Spike.Baseline != DefaultSpikeBaseline {
					t.Errorf("settings %+v", s)
				}
			}
		})
	}
}

// TestConfigOfBadSection: a config parsed without this package's section
// (a tool, a test) still has its spike: section checked when the checks
// are built: New refuses it with the error's path (the file's tree is gone
// after Parse, so without its line).
func TestConfigOfBadSection(t *testing.T) {
	cfg, err := config.Parse([]byte("spike:\n  alpha: 3\n"), "t.yaml", config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(nil, cfg, testSecret, nil, nil); err == nil || !strings.Contains(err.Error(), "spike.alpha: want a weight in (0, 1], got 3") {
		t.Fatalf("New: %v", err)
	}
	if _, err := SettingsFor(cfg, "acme"); err == nil {
		t.Fatal("SettingsFor accepted alpha 3")
	}
}

// TestConfigMarshal: the effective config renders the section with its
// defaults, and the rendering parses back to the same settings.
func TestConfigMarshal(t *testing.T) {
	opts := config.Options{Sections: []config.SectionSpec{Section}}
	cfg, err := config.Parse([]byte("spike: {window: 15m}\n"), "t.yaml", opts)
	if err != nil {
		t.Fatal(err)
	}
	out, err := cfg.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, err := config.Parse(out, "marshalled.yaml", opts)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	got, _ := ConfigOf(back)
	if want := (Config{Enabled: true, Window: 15 * time.Minute, Alpha: DefaultSpikeAlpha}); *got != want {
		t.Errorf("round trip %+v, want %+v\n%s", *got, want, out)
	}
}
