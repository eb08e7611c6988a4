package config

import (
	"errors"
	"slices"
	"testing"
)

func TestLocalSubmissionDefaults(t *testing.T) {
	cfg, err := Parse([]byte("provider:\n  hostnames: [mta1.provider.test, \"*.mx.provider.test\"]\n"), "c.yaml", Options{})
	if err != nil {
		t.Fatal(err)
	}
	l := cfg.LocalSubmission
	if l.SenderBinding != SenderBindingNone || l.Unattributed != LocalUnattributedDefer || l.Deferrals != LocalDeferralsDefer || !slices.Equal(l.LoginDomains, []string{"mta1.provider.test"}) || l.UnattributedCustomer() != "" {
		t.Fatalf("defaults: %+v", l)
	}
}

func TestLocalSubmissionValid(t *testing.T) {
	cfg, err := Parse([]byte(`
local_submission: {sender_binding: postfix, unattributed: system}
customers:
  - id: acme
    local_users: [web1, "uid:1001"]
    domains: [acme.example]
  - id: system
    domains: [mta1.provider.test]
`), "c.yaml", Options{})
	if err != nil {
		t.Fatalf("a system customer with domains only, and a customer with local_users only, must be valid: %v", err)
	}
	if cfg.LocalSubmission.UnattributedCustomer() != "system" {
		t.Fatalf("UnattributedCustomer() = %q", cfg.LocalSubmission.UnattributedCustomer())
	}
}

func TestLocalSubmissionErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{"binding", "local_submission:\n  sender_binding: maybe\n",
			[]string{`bad.yaml:2: local_submission.sender_binding: want postfix or none, got "maybe"`}},
		{"deferrals", "local_submission:\n  deferrals: bounce\n",
			[]string{`bad.yaml:2: local_submission.deferrals: want defer or hold, got "bounce"`}},
		{"no such customer", "local_submission:\n  unattributed: sys\n",
			[]string{`bad.yaml:2: local_submission.unattributed: want defer, reject or the id of a customer, got "sys" (no such customer)`}},
		{"login domain", "local_submission:\n  login_domains: [\"*.provider.test\"]\n",
			[]string{`bad.yaml:2: local_submission.login_domains[0]: bad domain "*.provider.test": want an exact domain such as Postfix's myorigin`}},
		{"users", `local_submission: {unattributed: a}
customers:
  - id: a
    local_users: [web1, "-x", "uid:", "we b"]
    domains: [a.example]
  - id: b
    local_users: [web1]
    domains: [A.example]
`, []string{
			`bad.yaml:1: local_submission.unattributed: customer "a" also lists local_users: the customer for unattributed local mail must be a provider-owned one of its own`,
			`bad.yaml:4: customers[0].local_users[1]: bad local user "-x": want a Unix login name`,
			`bad.yaml:4: customers[0].local_users[2]: bad local user "uid:": want a login name or uid:NUMBER`,
			`bad.yaml:4: customers[0].local_users[3]: bad local user "we b": character ' ' not allowed in a Unix login name`,
			`bad.yaml:7: customers[1].local_users[0]: Unix user "web1" also belongs to customer "a"`,
			`bad.yaml:8: customers[1].domains[0]: domain "A.example" is customer "a"'s (set force: true on either entry to allow it)`,
			`bad.yaml:8: customers[1].domains[0]: domain "A.example" is also customer "a"'s, and both have local_users: local mail from it could not be attributed`,
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml), "bad.yaml", Options{})
			var es Errors
			if !errors.As(err, &es) {
				t.Fatalf("err = %v, want Errors", err)
			}
			var got []string
			for _, e := range es {
				got = append(got, e.Error())
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("errors:\n%s\nwant:\n%s", joinLines(got), joinLines(tc.want))
			}
		})
	}
}

func joinLines(ss []string) string {
	out := ""
	for _, s := range ss {
		out += "  " + s + "\n"
	}
	return out
}
