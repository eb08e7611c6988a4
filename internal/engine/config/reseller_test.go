package config

import (
	"strings"
	"testing"
)

const resellerConfig = `
resellers:
  - id: hostco
    name: HostCo
    abuse_contacts: [abuse@hostco.example, noc@hostco.example]
    limits: {messages_per_hour: 1000}
customers:
  - id: acme
    reseller: hostco
    logins: [acme]
    domains: [acme.example]
  - id: own
    logins: [own]
    domains: [own.example]
`

func TestResellersParsed(t *testing.T) {
	cfg, err := Parse([]byte(resellerConfig), "r.yaml", testOpts)
	if err != nil {
		t.Fatal(err)
	}
	r := cfg.Reseller("hostco")
	if r == nil || r.Name != "HostCo" || len(r.AbuseContacts) != 2 || r.Limits.MessagesPerHour == nil || *r.Limits.MessagesPerHour != 1000 {
		t.Fatalf("reseller %+v", r)
	}
	if cfg.Customers[0].Reseller != "hostco" || cfg.Customers[1].Reseller != "" {
		t.Fatalf("customers' resellers %q %q", cfg.Customers[0].Reseller, cfg.Customers[1].Reseller)
	}
	if cfg.Reseller("nope") != nil || cfg.Reseller("") != nil {
		t.Fatal("unknown reseller found")
	}
}

func TestResellersValidated(t *testing.T) {
	for _, tt := range []struct{ name, yaml, want string }{
		{"unknown reseller of a customer",
			"resellers:\n  - id: hostco\ncustomers:\n  - id: acme\n    logins: [acme]\n    domains: [acme.example]\n    reseller: nosuch\n",
			`bad.yaml:7: customers[0].reseller: unknown reseller "nosuch"`},
		{"reseller without an id", "resellers:\n  - name: X\n", "bad.yaml:2: resellers[0].id: reseller needs an id"},
		{"duplicate id", "resellers:\n  - id: a\n  - id: a\n", `bad.yaml:3: resellers[1].id: id "a" already used by resellers[0]`},
		{"bad id", "resellers:\n  - id: \"a b\"\n", `bad.yaml:2: resellers[0].id: id "a b": only letters`},
		{"bad abuse contact", "resellers:\n  - id: a\n    abuse_contacts: [ok@a.example, \"not an address\"]\n", `bad.yaml:3: resellers[0].abuse_contacts[1]: bad address "not an address"`},
		{"negative limit", "resellers:\n  - id: a\n    limits:\n      messages_per_day: -1\n", "bad.yaml:4: resellers[0].limits.messages_per_day: must not be negative"},
		{"limit that is per customer", "resellers:\n  - id: a\n    limits:\n      per_recipient_per_hour: 3\n", "bad.yaml:4: resellers[0].limits.per_recipient_per_hour: not a reseller-wide limit"},
		{"unknown key", "resellers:\n  - id: a\n    contact: x@a.example\n", "contact"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml), "bad.yaml", testOpts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %v, want %q", err, tt.want)
			}
		})
	}
}

func TestLiveCustomerNamesAKnownReseller(t *testing.T) {
	cfg, err := Parse([]byte(resellerConfig), "r.yaml", testOpts)
	if err != nil {
		t.Fatal(err)
	}
	good := Customer{ID: "newco", Reseller: "hostco", Logins: []string{"newco"}, Domains: []string{"newco.example"}}
	if _, err := cfg.WithCustomers([]Customer{good}, testOpts); err != nil {
		t.Fatalf("known reseller refused: %v", err)
	}
	bad := good
	bad.Reseller = "other"
	_, err = cfg.WithCustomers([]Customer{bad}, testOpts)
	if err == nil || !strings.Contains(err.Error(), `customers[0].reseller: unknown reseller "other"`) {
		t.Fatalf("err %v", err)
	}
}
