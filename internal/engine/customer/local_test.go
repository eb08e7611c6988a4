package customer

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/mailaddr"
)

func TestIsLocalSubmission(t *testing.T) {
	tests := []struct {
		name string
		host string
		port uint16
		addr string
		want bool
	}{
		// What Postfix 3.7's cleanup sends for sendmail/pickup mail.
		{"postfix non-SMTP", "localhost", 0, "127.0.0.1", true},
		{"v4-mapped", "localhost", 0, "::ffff:127.0.0.1", true},
		{"SMTP client on loopback", "localhost", 41234, "127.0.0.1", false},
		{"SMTP client with unknown name", "[127.0.0.1]", 41234, "127.0.0.1", false},
		{"port 0 from elsewhere", "localhost", 0, "192.0.2.1", false},
		{"other name", "web1.example", 0, "127.0.0.1", false},
		{"invalid address", "localhost", 0, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, _ := netip.ParseAddr(tc.addr)
			if got := IsLocalSubmission(tc.host, tc.port, a); got != tc.want {
				t.Fatalf("IsLocalSubmission(%q, %d, %q) = %v", tc.host, tc.port, tc.addr, got)
			}
		})
	}
}

const localYAML = `
provider: {hostnames: [mta1.provider.test]}
local_submission: {sender_binding: BINDING, unattributed: UNATTR}
customers:
  - id: acme
    local_users: [web1, "uid:1001"]
    domains: [acme.example, "*.acme.example"]
  - id: beta
    local_users: [web2]
    domains: [beta.example]
  - id: smtp-only
    networks: [192.0.2.0/24]
    domains: [smtp.example]
  - id: system
    domains: [mta1.provider.test]
`

func localIdentifier(t *testing.T, binding, unattributed string) (*LocalIdentifier, *config.Config) {
	t.Helper()
	y := strings.NewReplacer("BINDING", binding, "UNATTR", unattributed).Replace(localYAML)
	if unattributed != "system" {
		// A customer nothing can be attributed to is a config error.
		y = y[:strings.Index(y, "  - id: system")]
	}
	cfg, err := config.Parse([]byte(y), "c.yaml", config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	d, err := NewDirectory(cfg)
	if err != nil {
		t.Fatal(err)
	}
	l, err := NewLocalIdentifier(cfg, d)
	if err != nil {
		t.Fatal(err)
	}
	return l, cfg
}

func TestLocalIdentify(t *testing.T) {
	tests := []struct {
		name, binding, unattr, sender string
		want, by, outcome, login      string
	}{
		{"customer domain", "postfix", "defer", "shop@acme.example", "acme", ByLocalSender, "", ""},
		{"customer subdomain", "postfix", "defer", "shop@eu.acme.example", "acme", ByLocalSender, "", ""},
		{"domain case", "postfix", "defer", "shop@BETA.example", "beta", ByLocalSender, "", ""},
		{"login at myorigin", "postfix", "defer", "web1@mta1.provider.test", "acme", ByLocalLogin, "", "web1"},
		{"login with extension", "postfix", "defer", "web2+bounce@mta1.provider.test", "beta", ByLocalLogin, "", "web2"},
		{"uid login", "postfix", "defer", "uid:1001@mta1.provider.test", "acme", ByLocalLogin, "", "uid:1001"},
		{"root", "postfix", "defer", "root@mta1.provider.test", "", "", config.LocalUnattributedDefer, ""},
		{"root to system", "postfix", "system", "root@mta1.provider.test", "system", ByLocalUnattributed, "", ""},
		{"login at a customer domain is not a login", "postfix", "reject", "web2@acme.example", "acme", ByLocalSender, "", ""},
		{"SMTP-only customer's domain", "postfix", "reject", "x@smtp.example", "", "", config.LocalUnattributedReject, ""},
		{"null sender", "postfix", "defer", "<>", "", "", config.LocalUnattributedDefer, ""},
		{"unbound: even a customer domain", "none", "defer", "shop@acme.example", "", "", config.LocalUnattributedDefer, ""},
		{"unbound: login", "none", "system", "web1@mta1.provider.test", "system", ByLocalUnattributed, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l, _ := localIdentifier(t, tc.binding, tc.unattr)
			a, err := mailaddr.Parse(tc.sender)
			if err != nil {
				t.Fatal(err)
			}
			r := l.Identify(a)
			got := ""
			if r.Customer != nil {
				got = r.Customer.ID
			}
			if got != tc.want || r.By != tc.by || r.Outcome != tc.outcome || r.Login != tc.login || r.Detail == "" {
				t.Fatalf("Identify(%s) = %q by %q outcome %q login %q (%s); want %q by %q outcome %q login %q",
					tc.sender, got, r.By, r.Outcome, r.Login, r.Detail, tc.want, tc.by, tc.outcome, tc.login)
			}
		})
	}
}

func TestPostfixSenderMap(t *testing.T) {
	_, cfg := localIdentifier(t, "postfix", "system")
	got := PostfixSenderMap(cfg)
	for _, want := range []string{
		"web1\tweb1, web1@mta1.provider.test, @acme.example\n",
		"uid:1001\tuid:1001, uid:1001@mta1.provider.test, @acme.example\n",
		"web2\tweb2, web2@mta1.provider.test, @beta.example\n",
		"#   not expressible in local_login_sender_maps (list each subdomain): *.acme.example\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in\n%s", want, got)
		}
	}
	if strings.Contains(got, "smtp.example") || strings.Contains(got, "system") {
		t.Errorf("customers without local_users listed:\n%s", got)
	}
}

// BenchmarkLocalIdentify measures the attribution of one local message
// (run: go test -run '^$' -bench LocalIdentify ./customer/).
func BenchmarkLocalIdentify(b *testing.B) {
	cfg, err := config.Parse([]byte(strings.NewReplacer("BINDING", "postfix", "UNATTR", "system").Replace(localYAML)), "c.yaml", config.Options{})
	if err != nil {
		b.Fatal(err)
	}
	d, err := NewDirectory(cfg)
	if err != nil {
		b.Fatal(err)
	}
	l, err := NewLocalIdentifier(cfg, d)
	if err != nil {
		b.Fatal(err)
	}
	senders := []mailaddr.Address{{Local: "shop", Domain: "eu.acme.example"}, {Local: "web1", Domain: "mta1.provider.test"}, {Local: "root", Domain: "mta1.provider.test"}}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if r := l.Identify(senders[i%len(senders)]); r.Customer == nil {
			b.Fatal("unattributed")
		}
	}
}
