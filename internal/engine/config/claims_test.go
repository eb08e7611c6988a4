package config

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// entry is one customer of a test directory, in the file's YAML.
func dirYAML(head string, entries ...string) string {
	var b strings.Builder
	b.WriteString(head)
	b.WriteString("customers:\n")
	for _, e := range entries {
		b.WriteString("  - " + strings.ReplaceAll(strings.TrimSpace(e), "\n", "\n    ") + "\n")
	}
	return b.String()
}

// TestDirectoryRefusesWhatNoPostmasterMeans pins the rules of customer
// entries (the same function validates the file, the commands, the API and
// imports: WithCustomers): each case is refused with an error naming the
// field and the other customer or bound, and a forceable one is accepted
// with force: true, as a warning saying it was forced.
func TestDirectoryRefusesWhatNoPostmasterMeans(t *testing.T) {
	acme := "id: acme\nnetworks: [192.0.2.0/24]\nlogins: [acme]\ndomains: [acme.example, \"*.shop.example\"]"
	tests := []struct {
		name    string
		head    string
		entry   string // the entry under test, after acme
		want    string // the error (and, forced, the warning) contains this
		path    string // where
		noForce bool   // force does not allow it
	}{
		{"IPv4 default route", "", "id: b\nnetworks: [0.0.0.0/0]\ndomains: [b.example]", "network 0.0.0.0/0 is broader than directory.max_network_prefix.ipv4 (/16)", "customers[1].networks[0]", false},
		{"IPv6 default route", "", "id: b\nnetworks: [\"::/0\"]\ndomains: [b.example]", "network ::/0 is broader than directory.max_network_prefix.ipv6 (/32)", "customers[1].networks[0]", false},
		{"a /8", "", "id: b\nnetworks: [10.0.0.0/8]\ndomains: [b.example]", "broader than directory.max_network_prefix.ipv4 (/16)", "customers[1].networks[0]", false},
		{"broader than loopback", "", "id: b\nnetworks: [126.0.0.0/7]\ndomains: [b.example]", "broader than directory.max_network_prefix.ipv4 (/16)", "customers[1].networks[0]", false},
		{"the bound is configured", "directory: {max_network_prefix: {ipv4: 24, ipv6: 48}}\n", "id: b\nnetworks: [10.1.0.0/20]\ndomains: [b.example]", "network 10.1.0.0/20 is broader than directory.max_network_prefix.ipv4 (/24)", "customers[1].networks[0]", false},
		{"login *", "", "id: b\nlogins: [\"*\"]\ndomains: [b.example]", `login pattern "*" is a catch-all: it matches every login`, "customers[1].logins[0]", false},
		{"login *@*", "", "id: b\nlogins: [\"*@*\"]\ndomains: [b.example]", "no literal domain", "customers[1].logins[0]", false},
		{"login [a-z]*", "", "id: b\nlogins: [\"[a-z]*\"]\ndomains: [b.example]", "matches every login", "customers[1].logins[0]", false},
		{"login with only a public suffix", "", "id: b\nlogins: [\"?*@*.com\"]\ndomains: [b.example]", `fixes only the public suffix "com"`, "customers[1].logins[0]", false},
		{"login at a public suffix", "", "id: b\nlogins: [\"*@co.uk\"]\ndomains: [b.example]", `its domain "co.uk" is a public suffix`, "customers[1].logins[0]", false},
		{"a network inside another customer's", "", "id: b\nnetworks: [192.0.2.128/25]\ndomains: [b.example]", `network 192.0.2.128/25 is inside customer "acme"'s network 192.0.2.0/24`, "customers[1].networks[0]", false},
		{"a network around another customer's", "", "id: b\nnetworks: [192.0.0.0/16]\ndomains: [b.example]", `network 192.0.0.0/16 contains customer "acme"'s network 192.0.2.0/24`, "customers[1].networks[0]", false},
		{"the very same network", "", "id: b\nnetworks: [192.0.2.0/24]\ndomains: [b.example]", `network 192.0.2.0/24 is already customer "acme"'s`, "customers[1].networks[0]", true},
		{"another customer's domain", "", "id: b\nlogins: [b]\ndomains: [ACME.example]", `domain "ACME.example" is customer "acme"'s`, "customers[1].domains[0]", false},
		{"a domain under another customer's wildcard", "", "id: b\nlogins: [b]\ndomains: [eu.shop.example]", `"eu.shop.example" is under customer "acme"'s wildcard "*.shop.example"`, "customers[1].domains[0]", false},
		{"a wildcard over another customer's domain", "", "id: b\nlogins: [b]\ndomains: [\"*.example\"]", `wildcard "*.example" covers a public suffix`, "customers[1].domains[0]", false},
		{"a wildcard at another customer's domain covers only its subdomains", "", "id: b\nlogins: [b]\ndomains: [\"*.acme.example\"]", "", "", false},
		{"*.net", "", "id: b\nlogins: [b]\ndomains: [\"*.net\"]", `wildcard "*.net" covers a public suffix`, "customers[1].domains[0]", false},
		{"a public suffix as a domain", "", "id: b\nlogins: [b]\ndomains: [co.uk]", `domain "co.uk" is a public suffix`, "customers[1].domains[0]", false},
		{"a 10,000-character id", "", "id: " + strings.Repeat("x", 10000) + "\nlogins: [b]\ndomains: [b.example]", "id is 10000 characters long; at most 64", "customers[1].id", true},
		{"a 65-character id", "", "id: " + strings.Repeat("x", 65) + "\nlogins: [b]\ndomains: [b.example]", "at most 64", "customers[1].id", true},
		{"NUL in a login", "", "id: b\nlogins: [\"b\\0x\"]\ndomains: [b.example]", `login "b\x00x": control character U+0000 at byte 1`, "customers[1].logins[0]", true},
		{"escape in a name", "", "id: b\nname: \"B \\e[31m\"\nlogins: [b]\ndomains: [b.example]", "control character U+001B", "customers[1].name", true},
		{"DEL in a domain", "", "id: b\nlogins: [b]\ndomains: [\"b\\x7f.example\"]", "control character U+007F", "customers[1].domains[0]", true},
		{"C1 in a network", "", "id: b\nlogins: [b]\nnetworks: [\"10.9.9.0/24\\u0085\"]\ndomains: [b.example]", "control character U+0085", "customers[1].networks[0]", true},
		{"NEL in a local user", "", "id: b\nlogins: [b]\nlocal_users: [\"web\\u0085\"]\ndomains: [b.example]", "control character U+0085", "customers[1].local_users[0]", true},
		{"NUL in an abuse contact", "", "id: b\nlogins: [b]\nabuse_contact: \"a\\0@b.example\"\ndomains: [b.example]", "control character U+0000", "customers[1].abuse_contact", true},
		{"NUL in a DKIM selector", "", "id: b\nlogins: [b]\ndomains: [b.example]\ndkim: [{domain: b.example, selector: \"s\\0\", key_file: /k.pem}]", "control character U+0000", "customers[1].dkim[0].selector", true},
		{"NUL in an id", "", "id: \"b\\0\"\nlogins: [b]\ndomains: [b.example]", "only letters, digits", "customers[1].id", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(dirYAML(tc.head, acme, tc.entry)), "c.yaml", Options{})
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused:\n%v", err)
				}
				return
			}
			var es Errors
			if !errors.As(err, &es) {
				t.Fatalf("accepted; want an error at %s containing %q", tc.path, tc.want)
			}
			found := false
			for _, e := range es {
				found = found || (e.Path == tc.path && strings.Contains(e.Msg, tc.want))
			}
			if !found {
				t.Fatalf("errors:\n%v\nwant one at %s containing %q", err, tc.path, tc.want)
			}
			if !tc.noForce && !strings.Contains(err.Error(), "set force: true") {
				t.Errorf("the error does not say how to force it:\n%v", err)
			}
			// Forced: accepted (when force may allow it), as a warning.
			forced := strings.Replace(tc.entry, "\n", "\nforce: true\n", 1)
			cfg, err := Parse([]byte(dirYAML(tc.head, acme, forced)), "c.yaml", Options{})
			if tc.noForce {
				if err == nil {
					t.Fatal("force: true allowed what it must not")
				}
				return
			}
			if err != nil {
				t.Fatalf("forced, still refused:\n%v", err)
			}
			warned := false
			for _, w := range cfg.Warnings() {
				warned = warned || (w.Path == tc.path && strings.HasPrefix(w.Msg, "forced: ") && strings.Contains(w.Msg, tc.want))
			}
			if !warned {
				t.Fatalf("forced without a warning at %s: %v", tc.path, cfg.Warnings())
			}
		})
	}
}

func TestDirectoryAcceptsOrdinaryEntries(t *testing.T) {
	y := dirYAML("",
		"id: a\nname: Ünïcödé GmbH\nlogins: [a, \"a-*\", \"*@a.example\", \"*@*.a.example\", \"web?@a.example\"]\nnetworks: [192.0.2.0/24, \"2001:db8:a::/48\", 198.51.100.7]\ndomains: [a.example, \"*.a.example\"]",
		"id: "+strings.Repeat("b", 64)+"\nnetworks: [192.0.3.0/24, 10.2.0.0/16]\ndomains: [b.example, \"*.b.co.uk\"]",
		// Loopback is this host: the breadth bound does not apply.
		"id: local\nnetworks: [127.0.0.0/8, \"::1\"]\ndomains: [local.example]",
	)
	cfg, err := Parse([]byte(y), "c.yaml", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Warnings()) != 0 {
		t.Fatalf("warnings: %v", cfg.Warnings())
	}
}

func TestDirectoryBoundIsValidated(t *testing.T) {
	for _, tc := range []struct{ yaml, path string }{
		{"directory: {max_network_prefix: {ipv4: 33}}\n", "directory.max_network_prefix.ipv4"},
		{"directory: {max_network_prefix: {ipv6: -1}}\n", "directory.max_network_prefix.ipv6"},
		{"directory: {max_network_prefix: {ipv6: 129}}\n", "directory.max_network_prefix.ipv6"},
	} {
		t.Run(tc.yaml, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml), "c.yaml", Options{})
			if err == nil || !strings.Contains(err.Error(), tc.path) {
				t.Fatalf("err = %v, want one at %s", err, tc.path)
			}
		})
	}
}

// TestClaimsAnswerForOneCustomer: the index the live directory checks a
// changed customer against finds the same overlaps as the full
// validation, leaves out the customers being replaced, and forgets a
// removed customer.
func TestClaimsAnswerForOneCustomer(t *testing.T) {
	cl := NewClaims()
	a := Customer{ID: "a", Networks: []string{"10.1.0.0/16", "2001:db8::/32"}, Domains: []string{"a.example", "*.a.example"}}
	b := Customer{ID: "b", Networks: []string{"10.2.3.0/24"}, Domains: []string{"b.example"}, Force: true}
	cl.Add(&a, 0)
	cl.Add(&b, 1)
	msgs := func(c Customer, ignore func(string) bool) []string {
		var out []string
		for _, o := range cl.Overlaps(&c, ignore, -1) {
			out = append(out, o.Field+": "+o.Message())
		}
		return out
	}
	for _, tc := range []struct {
		name   string
		c      Customer
		ignore func(string) bool
		want   []string
	}{
		{"inside", Customer{ID: "n", Networks: []string{"10.1.2.0/24"}}, nil,
			[]string{`networks[0]: network 10.1.2.0/24 is inside customer "a"'s network 10.1.0.0/16 (set force: true on either entry to allow it)`}},
		{"around two, one forced", Customer{ID: "n", Networks: []string{"10.0.0.0/14"}}, nil,
			[]string{`networks[0]: network 10.0.0.0/14 contains customer "a"'s network 10.1.0.0/16 (set force: true on either entry to allow it)`,
				`networks[0]: forced: network 10.0.0.0/14 contains customer "b"'s network 10.2.3.0/24`}},
		{"IPv6 inside", Customer{ID: "n", Networks: []string{"2001:db8:5::/48"}}, nil,
			[]string{`networks[0]: network 2001:db8:5::/48 is inside customer "a"'s network 2001:db8::/32 (set force: true on either entry to allow it)`}},
		{"beside", Customer{ID: "n", Networks: []string{"10.3.0.0/16", "2001:db9::/32"}, Domains: []string{"n.example", "*.n.example"}}, nil, nil},
		{"the replaced customer is left out", Customer{ID: "n", Networks: []string{"10.1.2.0/24"}}, func(id string) bool { return id == "a" }, nil},
		{"its own claims are no overlap", a, nil, nil},
		{"domains", Customer{ID: "n", Domains: []string{"x.a.example", "*.b.example"}}, nil,
			[]string{`domains[0]: "x.a.example" is under customer "a"'s wildcard "*.a.example" (set force: true on either entry to allow it)`}},
		{"a wildcard over a forced customer's domain", Customer{ID: "n", Domains: []string{"*.example"}}, nil,
			[]string{`domains[0]: wildcard "*.example" covers customer "a"'s domain "a.example" (set force: true on either entry to allow it)`,
				`domains[0]: wildcard "*.example" covers customer "a"'s wildcard "*.a.example" (set force: true on either entry to allow it)`,
				`domains[0]: forced: wildcard "*.example" covers customer "b"'s domain "b.example"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := msgs(tc.c, tc.ignore)
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Fatalf("overlaps:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
	cl.Remove(&a)
	if got := msgs(Customer{ID: "n", Networks: []string{"10.1.2.0/24"}, Domains: []string{"a.example"}}, nil); got != nil {
		t.Fatalf("after removing a: %v", got)
	}
}

// TestClaimsChangedInPlaceMatchRebuilt: changes applied to the built
// lists in place (a few between queries) and in bulk (more than
// maxInPlace: rebuilt) answer like an index built from scratch.
func TestClaimsChangedInPlaceMatchRebuilt(t *testing.T) {
	mk := func(i int) Customer {
		return Customer{ID: fmt.Sprintf("c%d", i), Networks: []string{fmt.Sprintf("10.%d.%d.0/24", i%7, i), fmt.Sprintf("10.%d.0.0/16", i%5+100)},
			Domains: []string{fmt.Sprintf("d%d.example", i%9), fmt.Sprintf("*.w%d.example", i%4)}}
	}
	probes := []Customer{
		{ID: "p", Networks: []string{"10.0.0.0/8", "10.3.3.0/24", "10.101.0.0/16", "10.2.9.128/25"}, Domains: []string{"*.example", "x.w1.example", "d3.example", "*.d4.example"}},
	}
	answer := func(cl *Claims) string {
		var b strings.Builder
		for _, p := range probes {
			for _, o := range cl.Overlaps(&p, nil, -1) {
				b.WriteString(o.Field + " " + o.Message() + "\n")
			}
		}
		return b.String()
	}
	live := NewClaims()
	var in []Customer
	for i := range 10 {
		live.Add(ptr(mk(i)), 0)
		in = append(in, mk(i))
	}
	answer(live) // built
	step := func(name string, f func()) {
		t.Run(name, func(t *testing.T) {
			f()
			fresh := NewClaims()
			for i := range in {
				fresh.Add(&in[i], 0)
			}
			if got, want := answer(live), answer(fresh); got != want {
				t.Fatalf("changed index:\n%s\nfresh:\n%s", got, want)
			}
		})
	}
	step("a few adds in place", func() {
		for i := 10; i < 13; i++ {
			live.Add(ptr(mk(i)), 0)
			in = append(in, mk(i))
		}
	})
	step("removes in place", func() {
		live.Remove(ptr(mk(3)))
		live.Remove(ptr(mk(11)))
		in = slices.DeleteFunc(in, func(c Customer) bool { return c.ID == "c3" || c.ID == "c11" })
	})
	step("a bulk import between two queries", func() {
		for i := 20; i < 20+2*maxInPlace; i++ {
			live.Add(ptr(mk(i)), 0)
			in = append(in, mk(i))
		}
	})
}

func ptr[T any](v T) *T { return &v }
