package reputation

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/aupguard/aupguard/internal/engine/config"
)

// parseWith parses a config with this package's section, as serve does.
func parseWith(y string) (*config.Config, error) {
	return config.Parse([]byte(y), "t.yaml", config.Options{Sections: []config.SectionSpec{Section}})
}

func TestReputationConfig(t *testing.T) {
	const cust = "customers:\n  - id: a\n    networks: [192.0.2.1]\n    domains: [a.example]\n"
	t.Run("defaults", func(t *testing.T) {
		cfg, err := parseWith("provider: {egress_ips: [192.0.2.25]}\nreputation:\n  dnsbl:\n    zones: [{zone: ZEN.Spamhaus.org.}, {zone: bl.example}]\n" + cust)
		if err != nil {
			t.Fatal(err)
		}
		r, err := ConfigOf(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if r.Bounces.Warn != 0.05 || r.Bounces.Act != 0.10 || r.Bounces.Outcome != BounceDeferBulk || r.Bounces.MinVolume != DefaultBounceMinVolume || r.Bounces.Window != DefaultBounceWindow {
			t.Errorf("bounce defaults %+v", r.Bounces)
		}
		if d := r.Deliveries; d.Egress.String() != "192.0.2.25" || d.QueueIDTTL != DefaultQueueIDTTL || d.AddressFormat != External ||
			d.MaxLag != DefaultDeliveriesMaxLag || len(d.SyslogNames) != 1 || d.SyslogNames[0] != "postfix" {
			t.Errorf("delivery defaults %+v", r.Deliveries)
		}
		if len(r.DNSBL.Addresses) != 1 || r.DNSBL.Addresses[0].String() != "192.0.2.25" || r.DNSBL.Interval != DefaultDNSBLInterval {
			t.Errorf("dnsbl defaults %+v", r.DNSBL)
		}
		zen, other := r.DNSBL.Zones[0], r.DNSBL.Zones[1]
		if zen.Zone != "zen.spamhaus.org" || zen.Listed[0] != "127.0.0.2-127.0.0.11" || other.Listed[0] != "127.0.0.2-127.0.0.255" || zen.Errors[0] != "127.255.255.0-127.255.255.255" {
			t.Errorf("zone defaults %+v %+v", zen, other)
		}
		// The answer ranges are parsed once, at decode.
		if len(zen.ListedRanges) != 1 || zen.ListedRanges[0].String() != "127.0.0.2-127.0.0.11" || len(other.ErrorRanges) != 1 || other.ErrorRanges[0].String() != "127.255.255.0-127.255.255.255" {
			t.Errorf("zone ranges %+v %+v", zen, other)
		}
	})
	tests := []struct{ name, yaml, want string }{
		{"act below warn", "reputation:\n  bounces: {warn: 0.2, act: 0.1}\n", "t.yaml:2: reputation.bounces.warn: warn (0.2) is above act (0.1)"},
		{"rate above 1", "reputation:\n  bounces: {act: 10}\n", "reputation.bounces.act: want a rate above 0 and at most 1"},
		{"bad outcome", "reputation:\n  bounces: {outcome: reject}\n", "want report, defer_bulk or defer_all"},
		{"short window", "reputation:\n  bounces: {window: 10m}\n", "must be at least 1h"},
		{"unknown customer", "reputation:\n  bounces:\n    customers:\n      nobody: {outcome: report}\n", "t.yaml:4: reputation.bounces.customers.nobody: no customer \"nobody\""},
		{"customer bad outcome", "reputation:\n  bounces:\n    customers:\n      a: {outcome: maybe}\n", "customers.a.outcome: want report"},
		{"bad egress", "reputation:\n  deliveries: {egress: mta1}\n", `t.yaml:2: reputation.deliveries.egress: bad address "mta1"`},
		{"bad transport", "reputation:\n  deliveries: {transports: {postfix/smtp: nowhere}}\n", `t.yaml:2: reputation.deliveries.transports.postfix/smtp: bad address "nowhere"`},
		{"bad transport name", "reputation:\n  deliveries: {transports: {\"a b\": 192.0.2.1}}\n", "reputation.deliveries.transports.a b: want a log name such as postfix-ip2/smtp"},
		{"bad dnsbl address", "reputation:\n  dnsbl:\n    addresses:\n      - 192.0.2.1\n      - 192.0.2.0/24\n", `t.yaml:5: reputation.dnsbl.addresses[1]: bad address "192.0.2.0/24"`},
		{"bad error range", "reputation:\n  dnsbl:\n    addresses: [192.0.2.1]\n    zones:\n      - zone: x.example\n        errors: [127.255.255.0-::1]\n", "t.yaml:6: reputation.dnsbl.zones[0].errors[0]: bad address range"},
		{"null transport", "reputation:\n  deliveries:\n    transports:\n      postfix/smtp: ~\n", "t.yaml:4: reputation.deliveries.transports.postfix/smtp: want an IP address, got none"},
		{"customer bad rate", "reputation:\n  bounces:\n    customers:\n      a: {act: 0}\n", "reputation.bounces.customers.a.act: want a rate above 0"},
		{"bad range", "reputation:\n  dnsbl:\n    addresses: [192.0.2.1]\n    zones: [{zone: x.example, listed: [127.0.0.9-127.0.0.2]}]\n", "reputation.dnsbl.zones[0].listed[0]: bad address range"},
		{"no address", "reputation:\n  dnsbl:\n    zones: [{zone: x.example}]\n", "no egress address to watch"},
		{"dup zone", "reputation:\n  dnsbl:\n    addresses: [192.0.2.1]\n    zones: [{zone: x.example}, {zone: X.example}]\n", "listed twice"},
		{"bad zone", "reputation:\n  dnsbl:\n    addresses: [192.0.2.1]\n    zones: [{zone: \"a b\"}]\n", "want a DNS zone"},
		{"interval", "reputation:\n  dnsbl: {interval: 1ms}\n", "must be at least 1s"},
		{"bad address format", "reputation:\n  deliveries: {address_format: quoted}\n", `t.yaml:2: reputation.deliveries.address_format: want external or internal (Postfix's info_log_address_format), got "quoted"`},
		{"bad syslog name", "reputation:\n  deliveries: {syslog_names: [postfix, \"postfix/\"]}\n", `reputation.deliveries.syslog_names[1]: want a Postfix syslog_name`},
		{"negative max lag", "reputation:\n  deliveries: {max_lag: -1s}\n", `reputation.deliveries.max_lag`},
		{"unknown key", "reputation:\n  bounce: {}\n", `reputation.bounce: unknown key "bounce" (did you mean bounces?)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseWith(tt.yaml + cust)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestIPRange(t *testing.T) {
	r, err := ParseIPRange("127.0.0.2-127.0.0.11")
	if err != nil {
		t.Fatal(err)
	}
	for s, want := range map[string]bool{"127.0.0.2": true, "127.0.0.11": true, "127.0.0.12": false, "127.0.0.1": false, "::1": false} {
		if got := r.Contains(netip.MustParseAddr(s)); got != want {
			t.Errorf("%s: %v, want %v", s, got, want)
		}
	}
	for _, bad := range []string{"", "x", "127.0.0.3-127.0.0.2", "127.0.0.1-::1"} {
		if _, err := ParseIPRange(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestReputationEffectiveConfig: check-config's effective config renders
// the section with its defaults and parses again to the same settings
// (an unknown egress address is left out, not rendered as "invalid IP").
func TestReputationEffectiveConfig(t *testing.T) {
	const cust = "customers:\n  - id: a\n    networks: [192.0.2.1]\n    domains: [a.example]\n"
	for _, y := range []string{
		"reputation:\n  deliveries: {source: /var/log/mail.log}\n",
		"provider: {egress_ips: [192.0.2.25, 192.0.2.27]}\nreputation:\n  deliveries: {egress: 192.0.2.27}\n",
		"provider: {egress_ips: [192.0.2.25]}\nreputation:\n  deliveries: {transports: {postfix-ip2/smtp: 192.0.2.26}}\n  bounces:\n    outcome: defer_all\n    customers: {a: {warn: 0.01, outcome: report}}\n  dnsbl:\n    zones: [{zone: zen.spamhaus.org}]\n",
	} {
		cfg, err := parseWith(y + cust)
		if err != nil {
			t.Fatal(err)
		}
		out, err := cfg.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(out), "invalid IP") {
			t.Errorf("effective config renders an unset address:\n%s", out)
		}
		again, err := parseWith(string(out))
		if err != nil {
			t.Fatalf("effective config does not parse: %v\n%s", err, out)
		}
		r1, _ := ConfigOf(cfg)
		r2, _ := ConfigOf(again)
		// (compared as YAML: an empty list may come back non-nil)
		y1, _ := yaml.Marshal(r1)
		y2, _ := yaml.Marshal(r2)
		if string(y1) != string(y2) || r1.DNSBL.Zones != nil && fmt.Sprint(r1.DNSBL.Zones) != fmt.Sprint(r2.DNSBL.Zones) {
			t.Errorf("effective config changed the section:\n%s\n%s", y1, y2)
		}
	}
}

// TestSnippet: configs/snippets/reputation.yaml is a valid config whose
// values are the defaults, as it says.
func TestSnippet(t *testing.T) {
	cfg, err := config.Load("../../../configs/snippets/reputation.yaml", config.Options{Sections: []config.SectionSpec{Section}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := ConfigOf(cfg)
	if err != nil {
		t.Fatal(err)
	}
	g, _ := yaml.Marshal(got)
	w, _ := yaml.Marshal(DefaultConfig())
	if string(g) != string(w) {
		t.Errorf("snippet differs from the defaults:\n%s\nwant\n%s", g, w)
	}
}

func TestTrustedProgram(t *testing.T) {
	d := DeliveriesConfig{SyslogNames: []string{"postfix", "postfix-ip2"}, Transports: map[string]config.Addr{"out3/smtp": {}}}
	for prog, want := range map[string]bool{
		"postfix/smtp": true, "postfix/lmtp": true, "postfix/relay/smtp": true, "postfix/local": true,
		"postfix/error": true, "postfix/retry": true, "postfix/virtual": true, "postfix/pipe": true, "postfix/discard": true,
		"postfix-ip2/smtp": true, "out3/smtp": true,
		"postfix/smtpd": false, "postfix/qmgr": false, "postfix/cleanup": false, "postfix/smtp/smtpd": false,
		"postfix-ip3/smtp": false, "postfixx/smtp": false, "php-fpm": false, "smtp": false, "/smtp": false, "": false,
	} {
		if got := d.TrustedProgram(prog); got != want {
			t.Errorf("TrustedProgram(%q) = %v, want %v", prog, got, want)
		}
	}
}
