package standing

import (
	"strings"
	"testing"
	"time"

	"github.com/aupguard/aupguard/internal/engine/config"
)

func parseWith(y string) (*config.Config, error) {
	return config.Parse([]byte(y), "t.yaml", config.Options{Sections: []config.SectionSpec{Section}})
}

const oneCustomer = "customers:\n  - id: a\n    networks: [192.0.2.1]\n    domains: [a.example]\n"

// TestStandingConfig: the defaults, and each bad value refused at its
// line with its path.
func TestStandingConfig(t *testing.T) {
	cfg, err := parseWith(oneCustomer)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := ConfigOf(cfg)
	if c.Refresh != DefaultRefresh || c.Content.Threshold != 3 || c.Content.Window != time.Hour || c.Content.Action != "hold" || !c.Content.On() {
		t.Fatalf("defaults %+v", c)
	}
	cases := []struct {
		name, yaml, want string
	}{
		{"refresh above a second", "standing:\n  refresh: 2s\n", "t.yaml:2: standing.refresh"},
		{"refresh too small", "standing:\n  refresh: 1ms\n", "t.yaml:2: standing.refresh"},
		{"unknown action", "standing:\n  content:\n    action: drop\n", "t.yaml:3: standing.content.action"},
		{"negative threshold", "standing:\n  content:\n    threshold: -1\n", "t.yaml:3: standing.content.threshold"},
		{"unknown key", "standing:\n  contnet: {}\n", "t.yaml:2"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseWith(tc.yaml + oneCustomer)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want %q", err, tc.want)
			}
		})
	}
	off, err := parseWith("standing:\n  content: {enabled: false, threshold: 5, action: defer}\n" + oneCustomer)
	if err != nil {
		t.Fatal(err)
	}
	if c, _ := ConfigOf(off); c.Content.On() || c.Content.Threshold != 5 || c.Content.Action != "defer" {
		t.Fatalf("set values %+v", c.Content)
	}
}
