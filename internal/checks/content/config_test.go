package content

import (
	"strings"
	"testing"

	"github.com/aupguard/aupguard/internal/engine/config"
)

// parseWith parses a config with this package's section, as serve does.
func parseWith(y string) (*config.Config, error) {
	return config.Parse([]byte(y), "t.yaml", config.Options{Sections: []config.SectionSpec{Section}})
}

const oneCustomer = "customers:\n  - id: a\n    networks: [192.0.2.1]\n    domains: [a.example]\n"

func TestContentConfigDefaultsLeaveEveryEngineOff(t *testing.T) {
	cfg, err := parseWith(oneCustomer)
	if err != nil {
		t.Fatal(err)
	}
	c, err := ConfigOf(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if c.Clamd.Address != "" || c.Rspamd.URL != "" || len(c.URLs.Zones) != 0 {
		t.Fatalf("an engine is on by default: %+v", c)
	}
	if c.Clamd.StreamMaxLength != DefaultStreamMaxLength || c.Rspamd.Hold != 6 || c.Rspamd.Reject != 15 {
		t.Fatalf("defaults %+v", c)
	}
}

func TestContentConfigCustomerThresholds(t *testing.T) {
	cfg, err := parseWith("content:\n  rspamd: {url: http://127.0.0.1:11333}\n  customers:\n    a: {spam_hold: 8}\n" + oneCustomer)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := ConfigOf(cfg)
	if h, r := c.Thresholds("a"); h != 8 || r != 15 {
		t.Errorf("customer a: hold %v reject %v, want 8 15", h, r)
	}
	if h, r := c.Thresholds("other"); h != 6 || r != 15 {
		t.Errorf("other customer: hold %v reject %v, want 6 15", h, r)
	}
}

func TestContentConfigErrorsAtTheirLine(t *testing.T) {
	tests := []struct{ name, yaml, want string }{
		{"relative unix socket", "content:\n  clamd: {address: unix:clamd.ctl}\n", "t.yaml:2: content.clamd.address: want unix:/absolute/path"},
		{"tcp without port", "content:\n  clamd: {address: tcp:localhost}\n", "content.clamd.address: want tcp:host:port"},
		{"tiny stream limit", "content:\n  clamd: {stream_max_length: 10}\n", "content.clamd.stream_max_length: want clamd's StreamMaxLength"},
		{"rspamd URL without scheme", "content:\n  rspamd: {url: 127.0.0.1:11333}\n", "content.rspamd.url: want rspamd's worker URL"},
		{"reject below hold", "content:\n  rspamd: {hold: 10, reject: 5}\n", "content.rspamd.reject: reject (5) is below hold (10)"},
		{"unknown customer", "content:\n  customers:\n    nobody: {spam_hold: 3}\n", "t.yaml:3: content.customers.nobody: no customer \"nobody\""},
		{"customer reject below hold", "content:\n  customers:\n    a: {spam_hold: 9, spam_reject: 7}\n", "content.customers.a.spam_reject: reject (7) is below hold (9)"},
		{"misspelled key", "content:\n  clamd: {adress: unix:/x}\n", "did you mean"},
		{"bad zone kind", "content:\n  urls:\n    zones: [{zone: dbl.example, kind: nope}]\n", "content.urls: zones[0] (dbl.example): kind \"nope\""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseWith(tc.yaml + oneCustomer)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

// TestContentSnippet: configs/snippets/content.yaml loads and turns every
// engine of the family on, with zones package links accepts.
func TestContentSnippet(t *testing.T) {
	cfg, err := config.Load("../../../configs/snippets/content.yaml", config.Options{Sections: []config.SectionSpec{Section}})
	if err != nil {
		t.Fatal(err)
	}
	c, err := ConfigOf(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if c.Clamd.Address != "unix:/run/clamav/clamd.ctl" || c.Clamd.StreamMaxLength != 25<<20 {
		t.Errorf("clamd %+v, want Debian's socket and StreamMaxLength", c.Clamd)
	}
	if c.Rspamd.URL != "http://127.0.0.1:11333" || c.Rspamd.Hold != 6 || c.Rspamd.Reject != 15 {
		t.Errorf("rspamd %+v, want the normal worker with thresholds 6 and 15", c.Rspamd)
	}
	var kinds []string
	for _, z := range c.URLs.Zones {
		kinds = append(kinds, z.Kind)
	}
	if strings.Join(kinds, ",") != "dbl,surbl,uribl,ip" {
		t.Errorf("zone kinds %v, want one list of each kind", kinds)
	}
	lu, err := NewListedURL(c.URLs, nopResolver{}, nil)
	if err != nil || lu.lists == nil {
		t.Fatalf("listed_url from the snippet: %v (lists %v)", err, lu)
	}
}
