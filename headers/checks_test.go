package headers

import (
	"context"
	"net/netip"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/policy"
	"github.com/aupguard/aupguard/internal/mailaddr"
)

func testCustomer(t *testing.T, domains ...string) *policy.Customer {
	t.Helper()
	c := &policy.Customer{ID: "acme"}
	for _, d := range domains {
		p, err := mailaddr.ParsePattern(d)
		if err != nil {
			t.Fatal(err)
		}
		c.Domains = append(c.Domains, p)
	}
	return c
}

func names(fs []policy.Finding) []string {
	out := []string{}
	for _, f := range fs {
		out = append(out, f.Name)
	}
	sort.Strings(out)
	return out
}

func hdrs(kv ...string) []policy.Header {
	var out []policy.Header
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, policy.Header{Name: kv[i], Value: kv[i+1]})
	}
	return out
}

func TestSyntaxFindings(t *testing.T) {
	s := &Settings{MaxCount: 5, MaxBytes: 300, MaxLineLength: 998}
	c := NewSyntax(s)
	tests := []struct {
		name string
		hs   []policy.Header
		want []string
	}{
		{"clean folded", hdrs("Subject", " a\r\n b", "From", " x@acme.example"), []string{}},
		{"injected field via CRLF", hdrs("Subject", " hi\r\nBcc: v@example.net"), []string{FindingHeaderFolding}},
		{"bare LF", hdrs("Subject", " hi\nthere"), []string{FindingHeaderBareLF}},
		{"bare CR", hdrs("Subject", " hi\rthere"), []string{FindingHeaderBareCR}},
		{"trailing CR", hdrs("Subject", " hi\r"), []string{FindingHeaderBareCR}},
		{"NUL in name", hdrs("X-A\x00", " v"), []string{FindingHeaderName, FindingHeaderNUL}},
		{"empty name", hdrs("", "orphan line"), []string{FindingHeaderName}},
		{"colon in name", hdrs("X:Y", " v"), []string{FindingHeaderName}},
		{"DEL", hdrs("Subject", " a\x7fb"), []string{FindingHeaderControl}},
		{"tab is fine", hdrs("Subject", "\ta\tb"), []string{}},
		{"first line counts the name", hdrs("X-"+strings.Repeat("n", 990), " 12345678"), []string{FindingHeaderLongLine, FindingHeaderSize}},
		{"folded long value is fine", hdrs("X-Long", " "+strings.Repeat("a", 200)+"\r\n "+strings.Repeat("b", 50)), []string{}},
		{"exactly 998 octets (only the size cap trips)", hdrs("X", " "+strings.Repeat("a", 995)), []string{FindingHeaderSize}},
		{"999 octets", hdrs("X", " "+strings.Repeat("a", 996)), []string{FindingHeaderLongLine, FindingHeaderSize}},
		{"too many", hdrs("A", " 1", "B", " 2", "C", " 3", "D", " 4", "E", " 5", "F", " 6"), []string{FindingHeaderCount}},
		{"encoded NUL", hdrs("Subject", " =?utf-8?q?a=00b?="), []string{FindingEncodedWordCtrl}},
		{"utf-8 C1 control", hdrs("Subject", " =?utf-8?b?woU=?="), []string{FindingEncodedWordCtrl}},
		{"latin1 ellipsis is text", hdrs("Subject", " =?iso-8859-1?q?wait=85?="), []string{}},
		{"raw UTF-8 is fine", hdrs("Subject", " Grüße"), []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			txn := &policy.Txn{Headers: tt.hs}
			fs, err := c.EOM(context.Background(), txn)
			if err != nil {
				t.Fatal(err)
			}
			want := append([]string{}, tt.want...)
			sort.Strings(want)
			if got := names(fs); !reflect.DeepEqual(got, want) {
				t.Errorf("got %v, want %v", got, want)
			}
			for _, f := range fs {
				if f.Action != policy.Reject || f.Reply != ReplyForged {
					t.Errorf("%s: action %v reply %q", f.Name, f.Action, f.Reply)
				}
			}
		})
	}
}

// A message with thousands of defects gives one finding per name.
func TestSyntaxAggregates(t *testing.T) {
	var hs []policy.Header
	for i := 0; i < 1000; i++ {
		hs = append(hs, policy.Header{Name: "X-Bad Name", Value: " a\rb"})
	}
	fs, _ := NewSyntax(&Settings{}).EOM(context.Background(), &policy.Txn{Headers: hs})
	if got := names(fs); !reflect.DeepEqual(got, []string{FindingHeaderBareCR, FindingHeaderName}) {
		t.Fatalf("got %v", got)
	}
	if !strings.Contains(fs[0].Detail, "(and 999 more)") {
		t.Errorf("detail %q does not count the repeats", fs[0].Detail)
	}
}

func TestIdentityMail(t *testing.T) {
	c := NewIdentity(&Settings{})
	cust := testCustomer(t, "acme.example", "*.acme.example", "bücher.example")
	tests := []struct {
		from string
		want []string
	}{
		{"<>", []string{}},
		{"a@acme.example", []string{}},
		{"a@ACME.EXAMPLE.", []string{}},
		{"a@news.acme.example", []string{}},
		{"a@xn--bcher-kva.example", []string{}},
		{"a@BÜCHER.example", []string{}},
		{"a@acme.example.evil.example", []string{FindingMailFromNotOwned}},
		{"a@notacme.example", []string{FindingMailFromNotOwned}},
		{"postmaster", []string{FindingMailFromNoDomain}},
	}
	for _, tt := range tests {
		t.Run(tt.from, func(t *testing.T) {
			a, _ := mailaddr.Parse(tt.from)
			txn := &policy.Txn{Customer: cust, MailFrom: a}
			fs, err := c.Mail(context.Background(), txn)
			if err != nil {
				t.Fatal(err)
			}
			if got := names(fs); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestIdentityEOM(t *testing.T) {
	c := NewIdentity(&Settings{})
	cust := testCustomer(t, "acme.example", "bücher.example")
	tests := []struct {
		name string
		hs   []policy.Header
		want []string
	}{
		{"own", hdrs("From", " A <a@acme.example>"), []string{}},
		{"U-label", hdrs("From", " a@BÜCHER.example."), []string{}},
		{"A-label", hdrs("From", " a@XN--BCHER-KVA.example"), []string{}},
		{"no From is not ours to report", hdrs("Subject", " x"), []string{}},
		{"second From foreign", hdrs("From", " a@acme.example", "From", " b@evil.example"), []string{FindingFromNotOwned}},
		{"two authors with own Sender", hdrs("From", " a@acme.example, b@acme.example", "Sender", " a@acme.example"), []string{}},
		{"Sender foreign alone", hdrs("From", " a@acme.example", "Sender", " s@evil.example"), []string{FindingSenderNotOwned}},
		{"display own address", hdrs("From", ` "A@ACME.example" <a@acme.example>`), []string{}},
		{"display foreign IDN homograph", hdrs("From", ` "a@аcme.example" <a@acme.example>`), []string{FindingDisplayNameImperson}},
		{"display in Sender", hdrs("From", " a@acme.example", "Sender", ` "x@bank.example" <s@acme.example>`), []string{FindingDisplayNameImperson}},
		{"charset decoded through the WHATWG index", hdrs("From", " =?koi8-r?q?a=40bank=2Eexample?= <a@acme.example>"), []string{FindingDisplayNameImperson}},
		{"name without address", hdrs("From", " PayPal Service <a@acme.example>"), []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			txn := &policy.Txn{Customer: cust, Headers: tt.hs}
			fs, err := c.EOM(context.Background(), txn)
			if err != nil {
				t.Fatal(err)
			}
			if got := names(fs); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
			for _, f := range fs {
				if f.Reply != ReplySender {
					t.Errorf("%s: reply %q", f.Name, f.Reply)
				}
			}
		})
	}
}

func forgerySettings(t *testing.T, yaml string) *Settings {
	t.Helper()
	cfg, err := config.Parse([]byte(yaml), "test.yaml", config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := SettingsFromConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

const forgeryYAML = `
provider:
  hostnames: [relay.provider.example]
  networks: [198.51.100.0/24]
  authserv_id: auth.provider.example
headers:
  authserv_ids: [legacy-id]
  %s
customers:
  - id: acme
    networks: [192.0.2.0/25]
    domains: [acme.example]
`

func TestForgeryReceivedPlacement(t *testing.T) {
	own := " from c (c [192.0.2.10]) by relay.provider.example (Postfix) with ESMTP id Q1; d"
	injected := " from x by relay.provider.example with SMTP id Z9; d"
	customerHop := " from app by smtp.acme.example with ESMTP id C1; d"
	tests := []struct {
		name  string
		extra string
		hs    []policy.Header
		want  []string
	}{
		{"customer hop only", "", hdrs("Received", customerHop, "Date", " d", "From", " a@acme.example"), []string{}},
		{"provider hop from the client (Postfix passes none)", "", hdrs("Received", injected, "Date", " d", "From", " a@acme.example"), []string{FindingReceivedForged}},
		{"injected deep", "", hdrs("Received", customerHop, "Received", customerHop, "Received", injected, "Date", " d", "From", " a@acme.example"), []string{FindingReceivedForged}},
		{"depth limit skips deep one", "received_depth: 2", hdrs("Received", customerHop, "Received", customerHop, "Received", injected, "Date", " d", "From", " a@acme.example"), []string{}},
		{"trusted MTA hop", "trusted_received: 1", hdrs("Received", own, "Date", " d", "From", " a@acme.example"), []string{}},
		{"injected below trusted MTA hop", "trusted_received: 1", hdrs("Received", own, "Received", injected, "Date", " d", "From", " a@acme.example"), []string{FindingReceivedForged}},
		{"fields above the trusted hop are the MTA's", "trusted_received: 1", hdrs("Authentication-Results", " auth.provider.example; spf=pass", "Received", own, "Date", " d", "From", " a@acme.example"), []string{}},
		{"fields below the trusted hop are the client's", "trusted_received: 1", hdrs("Received", own, "Authentication-Results", " auth.provider.example; spf=pass", "Date", " d", "From", " a@acme.example"), []string{FindingAuthResForged}},
		{"configured extra authserv-id", "", hdrs("Authentication-Results", " LEGACY-ID; spf=pass", "Date", " d", "From", " a@acme.example"), []string{FindingAuthResForged}},
		{"provider hostname as authserv-id", "", hdrs("ARC-Authentication-Results", " i=1; relay.provider.example; spf=pass", "Date", " d", "From", " a@acme.example"), []string{FindingARCAuthResForged}},
		{"foreign authserv-id", "", hdrs("Authentication-Results", " mx.google.com; spf=pass", "Date", " d", "From", " a@acme.example"), []string{}},
		{"origin list off", "origin_headers: []", hdrs("X-Originating-IP", " [203.0.113.1]", "Date", " d", "From", " a@acme.example"), []string{}},
		{"origin client addr", "", hdrs("X-Originating-IP", " [192.0.2.200]", "Date", " d", "From", " a@acme.example"), []string{}},
		{"origin loopback", "", hdrs("X-Originating-IP", " 127.0.0.1", "Date", " d", "From", " a@acme.example"), []string{}},
		{"custom origin header", "origin_headers: [X-Real-IP]", hdrs("X-Real-IP", " 203.0.113.1", "X-Originating-IP", " 203.0.113.1", "Date", " d", "From", " a@acme.example"), []string{FindingOriginForeign}},
		{"obsolete space before colon", "", hdrs("Date", " d", "From ", " a@acme.example", "From", " b@acme.example"), []string{"duplicate_from"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := forgerySettings(t, strings.Replace(forgeryYAML, "%s", tt.extra, 1))
			c := NewForgery(s)
			txn := &policy.Txn{
				Conn:     &policy.Conn{ClientAddr: netip.MustParseAddr("192.0.2.200")},
				Customer: &policy.Customer{ID: "acme"},
				Headers:  tt.hs,
			}
			fs, err := c.EOM(context.Background(), txn)
			if err != nil {
				t.Fatal(err)
			}
			if got := names(fs); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// The configuration, not the check, decides: per-finding and per-customer
// overrides and monitor mode act on these findings by name.
func TestChainConfiguration(t *testing.T) {
	s := &Settings{MaxLineLength: 998}
	accept := policy.Accept
	cust := testCustomer(t, "acme.example")
	mk := func(findings map[string]policy.Action, cust *policy.Customer) policy.Verdict {
		chain := policy.NewChain([]policy.Step{
			{Check: NewIdentity(s), Enabled: true, Findings: findings},
			{Check: NewForgery(s), Enabled: true},
		})
		txn := policy.NewTxn(&policy.Conn{}, cust, "r", time.Unix(0, 0))
		txn.Headers = hdrs("Date", " d", "From", ` "ceo@bank.example" <a@acme.example>`)
		return chain.EOM(context.Background(), txn)
	}
	if v := mk(nil, cust); v.Action != policy.Reject || v.Finding != FindingDisplayNameImperson || v.Reply.String() != "550 5.7.1 Sender address not permitted" {
		t.Errorf("default: %+v", v)
	}
	if v := mk(map[string]policy.Action{FindingDisplayNameImperson: policy.Accept}, cust); v.Action != policy.Accept || len(v.Results) != 1 {
		t.Errorf("provider override to accept: %+v", v)
	}
	over := *cust
	over.Overrides = map[string]policy.CustomerOverride{IdentityName: {Action: &accept}}
	if v := mk(nil, &over); v.Action != policy.Accept {
		t.Errorf("customer override: %+v", v)
	}
	mon := *cust
	mon.Mode = policy.Monitor
	if v := mk(nil, &mon); v.Action != policy.Reject || v.Effective() != policy.Accept {
		t.Errorf("monitor: %+v", v)
	}
}

func TestConfigValidation(t *testing.T) {
	tests := []struct {
		yaml string
		want string
	}{
		{"headers:\n  max_line_length: 50\n", "headers.max_line_length"},
		{"headers:\n  max_count: -1\n", "headers.max_count"},
		{"headers:\n  origin_headers: [\"X Bad\"]\n", "headers.origin_headers[0]"},
		{"headers:\n  origin_headers: [X-A, x-a]\n", "headers.origin_headers[1]"},
		{"headers:\n  origin_allowed_networks: [10.0.0.1/8]\n", "headers.origin_allowed_networks[0]"},
		{"headers:\n  trusted_received: -1\n", "headers.trusted_received"},
		{"headers:\n  authserv_ids: [\"a b\"]\n", "headers.authserv_ids[0]"},
		{"headers:\n  max_headers: 5\n", "max_headers"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			_, err := config.Parse([]byte(tt.yaml), "t.yaml", config.Options{Sections: []config.SectionSpec{Section}})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one about %s", err, tt.want)
			}
			if !strings.Contains(err.Error(), "t.yaml:") {
				t.Errorf("error %v has no place", err)
			}
		})
	}
	cfg, err := config.Parse([]byte("provider:\n  hostnames: [a.example]\n"), "t.yaml", config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	h, err := ConfigOf(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if h.MaxCount != DefaultHeaderMaxCount || h.MaxLineLength != 998 || h.TrustedReceived != 0 || len(h.OriginHeaders) != 3 {
		t.Errorf("defaults not applied: %+v", h)
	}
}

// The commented snippet the lead merges into configs/aupguard.yaml parses
// and gives the defaults.
func TestConfigSnippet(t *testing.T) {
	cfg, err := config.Load("../configs/snippets/headers.yaml", config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	h, err := ConfigOf(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if h.MaxCount != DefaultHeaderMaxCount || h.MaxBytes != DefaultHeaderMaxBytes ||
		h.MaxLineLength != DefaultHeaderMaxLineLength || h.TrustedReceived != 0 ||
		!reflect.DeepEqual(h.OriginHeaders, DefaultOriginHeaders) {
		t.Errorf("snippet differs from the defaults: %+v", h)
	}
}

// BenchmarkChecks measures the three checks on a typical 20-field message
// (the per-message cost on the hot path).
func BenchmarkChecks(b *testing.B) {
	msg, err := os.ReadFile("testdata/ok_customer_trace.eml")
	if err != nil {
		b.Fatal(err)
	}
	hs, _ := SplitHeader(msg)
	for i := 0; i < 12; i++ {
		hs = append(hs, policy.Header{Name: "X-Extra-" + strconv.Itoa(i), Value: " =?UTF-8?Q?caf=C3=A9?= value"})
	}
	s := &Settings{MaxCount: 500, MaxBytes: 1 << 18, MaxLineLength: 998, OriginHeaders: DefaultOriginHeaders}
	cust := &policy.Customer{ID: "acme"}
	p, _ := mailaddr.ParsePattern("acme.example")
	cust.Domains = []mailaddr.Pattern{p}
	checks := []policy.EOMChecker{NewSyntax(s), NewIdentity(s), NewForgery(s)}
	txn := &policy.Txn{Conn: &policy.Conn{}, Customer: cust, Headers: hs}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, c := range checks {
			if _, err := c.EOM(context.Background(), txn); err != nil {
				b.Fatal(err)
			}
		}
	}
}
