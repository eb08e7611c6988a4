package config

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/aupguard/aupguard/internal/engine/policy"
)

var testOpts = Options{Checks: []string{"sender_identity", "rate"}, DefaultChain: []string{"sender_identity", "rate"}}

const goodConfig = `
milter:
  listen: inet:127.0.0.1:8891
customers:
  - id: acme
    logins: [acme, "acme-*"]
    networks: [192.0.2.0/24]
    domains: [acme.example, "*.acme.example"]
`

func TestGoodConfigDefaults(t *testing.T) {
	cfg, err := Parse([]byte(goodConfig), "good.yaml", testOpts)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Store.Backend != "memory" || cfg.Store.OnError != ActionOf(policy.Defer) || cfg.Unidentified.Action != ActionOf(policy.Reject) {
		t.Fatalf("defaults not applied: %+v %+v", cfg.Store, cfg.Unidentified)
	}
	if strings.Join(cfg.Chain, ",") != "sender_identity,rate" {
		t.Fatalf("default chain %v", cfg.Chain)
	}
	if cfg.Customers[0].Mode != "enforce" {
		t.Fatalf("customer mode %q", cfg.Customers[0].Mode)
	}
	if cfg.Milter.Listen != "inet:127.0.0.1:8891" {
		t.Fatal(cfg.Milter.Listen)
	}
}

func TestDefaultListenIsTheMTAsSocket(t *testing.T) {
	cfg, err := Parse([]byte("customers: []\n"), "x.yaml", testOpts)
	if err != nil {
		t.Fatal(err)
	}
	m := cfg.Milter
	if m.Listen != "unix:/var/spool/postfix/aupguard/milter.sock" || m.SocketGroup != "postfix" || !slices.Equal(m.AllowedPeers, []string{"postfix", "root"}) {
		t.Fatalf("default listen %q group %q peers %q: want Postfix's socket, group postfix, peers postfix and root", m.Listen, m.SocketGroup, m.AllowedPeers)
	}
}

func TestMilterPeersValidated(t *testing.T) {
	for _, tt := range []struct{ name, yaml, want string }{
		{"empty list", "milter:\n  allowed_peers: []\n", "bad.yaml:2: milter.allowed_peers: empty: no process could speak milter"},
		{"control character", "milter:\n  allowed_peers: [\"post\\x00fix\"]\n", "bad.yaml:2: milter.allowed_peers[0]: want a user name or a uid"},
		{"glob", "milter:\n  allowed_peers: [\"*\"]\n", "bad.yaml:2: milter.allowed_peers[0]: want a user name or a uid"},
		{"relative socket", "milter:\n  listen: unix:aupguard/milter.sock\n", "bad.yaml:2: milter.listen: unix: socket path \"aupguard/milter.sock\" must be absolute"},
		{"abstract socket", "milter:\n  listen: \"unix:@aupguard\"\n", "bad.yaml:2: milter.listen: unix: socket path \"@aupguard\" must be absolute"},
		{"group with a space", "milter:\n  socket_group: \"post fix\"\n", "bad.yaml:2: milter.socket_group: want a group name"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml), "bad.yaml", testOpts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %v, want %q", err, tt.want)
			}
		})
	}
	t.Run("an unknown user is a warning: it allows nobody", func(t *testing.T) {
		cfg, err := Parse([]byte("milter:\n  allowed_peers: [root, no-such-user-aupg, \"104\"]\n"), "w.yaml", testOpts)
		if err != nil {
			t.Fatal(err)
		}
		ws := cfg.Warnings()
		if len(ws) != 1 || !strings.Contains(ws[0].Error(), `milter.allowed_peers[1]: "no-such-user-aupg" is no user on this host`) {
			t.Fatalf("warnings %v", ws)
		}
	})
}

func TestBadConfigs(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string // every error, in order, as printed
	}{
		{"unknown key", "milter:\n  listen: inet:127.0.0.1:1\n  bogus: 1\n",
			[]string{`bad.yaml:3: milter.bogus: unknown key "bogus"`}},
		{"non-loopback without allowed mtas", "milter:\n  listen: inet:0.0.0.0:8891\n",
			[]string{`bad.yaml:2: milter.listen: listening on non-loopback "0.0.0.0" requires milter.allowed_mtas`}},
		{"bad listen", "milter:\n  listen: tcp/8891\n",
			[]string{`bad.yaml:2: milter.listen: want inet:HOST:PORT or unix:PATH, got "tcp/8891"`}},
		{"bad allowed mta", "milter:\n  listen: inet:0.0.0.0:8891\n  allowed_mtas: [10.0.0.300]\n",
			[]string{`bad.yaml:3: milter.allowed_mtas[0]: bad address "10.0.0.300"`}},
		{"store backend", "store:\n  backend: mysql\n",
			[]string{`bad.yaml:2: store.backend: want memory or redis, got "mysql"`}},
		{"redis needs addrs", "store:\n  backend: redis\n",
			[]string{`bad.yaml:2: store.redis.addrs: redis backend needs at least one address`}},
		{"store on_error", "store:\n  on_error: reject\n",
			[]string{`bad.yaml:2: store.on_error: action "reject" not allowed here (want defer or accept)`}},
		{"customers", `customers:
  - id: acme
    networks: [10.0.0.1/8, nope]
    domains: ["bad domain"]
    mode: loud
  - id: acme
    logins: ["x["]
    domains: [a.example]
  - id: "b c"
    domains: [b.example]
`, []string{
			`bad.yaml:3: customers[0].networks[0]: bad network "10.0.0.1/8": host bits set (did you mean 10.0.0.0/8?)`,
			`bad.yaml:3: customers[0].networks[1]: bad address "nope"`,
			`bad.yaml:4: customers[0].domains[0]: bad domain "bad domain": domain "bad domain": character ' ' not allowed`,
			`bad.yaml:5: customers[0].mode: want enforce or monitor, got "loud"`,
			`bad.yaml:6: customers[1].id: id "acme" already used by customers[0]`,
			`bad.yaml:7: customers[1].logins[0]: bad login pattern "x[": syntax error in pattern`,
			`bad.yaml:9: customers[2].id: id "b c": only letters, digits, '-', '_' and '.' are allowed`,
			`bad.yaml:9: customers[2]: customer "b c" has neither logins nor networks: no mail can be attributed to it`,
		}},
		{"provider addresses", "provider:\n  networks: [10.0.0.1/8]\n  egress_ips:\n    - 192.0.2.1/32\n",
			[]string{
				`bad.yaml:2: provider.networks[0]: bad network "10.0.0.1/8": host bits set (did you mean 10.0.0.0/8?)`,
				`bad.yaml:4: provider.egress_ips[0]: bad address "192.0.2.1/32"`,
			}},
		{"same network twice", "customers:\n  - id: a\n    networks: [192.0.2.0/24]\n    domains: [a.example]\n  - id: b\n    networks: [192.0.2.0/24]\n    domains: [b.example]\n",
			[]string{`bad.yaml:6: customers[1].networks[0]: network 192.0.2.0/24 is already customer "a"'s`}},
		{"no domains", "customers:\n  - id: a\n    logins: [a]\n",
			[]string{`bad.yaml:2: customers[0].domains: customer "a" lists no sender domains`}},
		{"unknown check", "chain: [sender_identity, nosuch]\nchecks:\n  rate:\n    action: explode\n",
			[]string{
				`bad.yaml:1: chain[1]: unknown check "nosuch" (known: sender_identity, rate)`,
				`bad.yaml:4: checks.rate.action: unknown action "explode" (want accept, defer, reject, quarantine or ignore)`,
			}},
		{"unidentified temp code with reject", "unidentified:\n  action: reject\n  code: 451\n  enhanced: 4.7.1\n  text: go away\n",
			[]string{`bad.yaml:3: unidentified.code: code 451 is temporary but action is reject`}},
		{"unidentified bad class", "unidentified:\n  action: reject\n  code: 550\n  enhanced: 4.7.1\n",
			[]string{`bad.yaml:2: unidentified: reply 550 4.7.1: class of code and enhanced code differ`}},
		{"type error and semantic error together", "milter:\n  max_connections: lots\nstore:\n  backend: mysql\n",
			[]string{
				"bad.yaml:2: milter.max_connections: cannot unmarshal !!str `lots` into int",
				`bad.yaml:4: store.backend: want memory or redis, got "mysql"`,
			}},
		{"yaml syntax", "milter: [\n", []string{"bad.yaml:1: did not find expected node content"}},
		{"empty file", "", []string{"bad.yaml:1: the config is empty (no settings, only comments or blank lines); refusing it: an empty file is more likely truncated than meant"}},
		{"blank lines", "\n\n  \n", []string{"bad.yaml:1: the config is empty (no settings, only comments or blank lines); refusing it: an empty file is more likely truncated than meant"}},
		{"comments only", "# aupguard\n# customers:\n#  - id: x\n", []string{"bad.yaml:1: the config is empty (no settings, only comments or blank lines); refusing it: an empty file is more likely truncated than meant"}},
		{"document marker only", "---\n", []string{"bad.yaml:1: the config is empty (no settings, only comments or blank lines); refusing it: an empty file is more likely truncated than meant"}},
		{"explicit null", "~\n", []string{"bad.yaml:1: the config is empty (no settings, only comments or blank lines); refusing it: an empty file is more likely truncated than meant"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml), "bad.yaml", testOpts)
			var es Errors
			if !errors.As(err, &es) {
				t.Fatalf("err = %v, want config.Errors", err)
			}
			var got []string
			for _, e := range es {
				got = append(got, e.Error())
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Fatalf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestReadTimeoutWarning(t *testing.T) {
	tests := []struct {
		name, yaml string
		warn       string // "" for none
	}{
		{"default", "customers: []\n", ""},
		{"as long as smtpd_timeout", "milter:\n  read_timeout: 300s\n", ""},
		{"shorter than smtpd_timeout", "log: {format: text}\nmilter:\n  read_timeout: 60s\n",
			"w.yaml:3: milter.read_timeout: 1m0s is shorter than Postfix's smtpd_timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse([]byte(tt.yaml), "w.yaml", testOpts)
			if err != nil {
				t.Fatal(err)
			}
			ws := cfg.Warnings()
			if tt.warn == "" {
				if len(ws) != 0 {
					t.Fatalf("warnings %v, want none", ws)
				}
				if cfg.Milter.ReadTimeout < MTACommandTimeout {
					t.Fatalf("default read_timeout %s is shorter than %s", cfg.Milter.ReadTimeout, MTACommandTimeout)
				}
				return
			}
			if len(ws) != 1 || !strings.HasPrefix(ws[0].Error(), tt.warn) {
				t.Fatalf("warnings %v, want %q", ws, tt.warn)
			}
		})
	}
}

// A top-level key that is neither core nor a family's section is refused
// at its line with the closest known key; a family's section is decoded by
// the family, its unknown keys placed too.
func TestUnknownSection(t *testing.T) {
	spec := SectionSpec{Key: "widgets", Decode: func(s *Section) any {
		w := &struct {
			Size int `yaml:"size"`
		}{Size: 1}
		s.Decode(w)
		s.Positive("widgets.size", w.Size)
		return w
	}}
	opts := Options{Sections: []SectionSpec{spec}}
	tests := []struct {
		name, yaml string
		want       []string
	}{
		{"misspelled section", "log:\n  level: info\nwidget:\n  size: 2\n",
			[]string{`t.yaml:3: widget: unknown key (did you mean widgets?)`}},
		{"misspelled key in a section", "widgets:\n  sise: 2\n",
			[]string{`t.yaml:2: widgets.sise: unknown key "sise" (did you mean size?)`}},
		{"family validation", "widgets:\n  size: -3\n",
			[]string{`t.yaml:2: widgets.size: must not be negative, got -3`}},
		{"type error", "widgets:\n  size: big\n",
			[]string{"t.yaml:2: widgets.size: cannot unmarshal !!str `big` into int"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml), "t.yaml", opts)
			var es Errors
			if !errors.As(err, &es) {
				t.Fatalf("error %v, want Errors", err)
			}
			var got []string
			for _, e := range es {
				got = append(got, e.Error())
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
	cfg, err := Parse([]byte("widgets:\n  size: 7\n"), "t.yaml", opts)
	if err != nil {
		t.Fatal(err)
	}
	if w := cfg.Section("widgets").(*struct {
		Size int `yaml:"size"`
	}); w.Size != 7 {
		t.Errorf("decoded %+v", w)
	}
}
