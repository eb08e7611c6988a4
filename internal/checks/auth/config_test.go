package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/aupguard/aupguard/internal/engine/config"
)

var sectionOpts = config.Options{Sections: []config.SectionSpec{Section}, Customers: []config.CustomerSection{CustomerSection}}

// writeKeyFile writes an Ed25519 PKCS#8 key at dir/name with mode.
func writeKeyFile(t *testing.T, dir, name string, mode os.FileMode) (string, ed25519.PrivateKey) {
	t.Helper()
	_, ek, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(ek)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p, ek
}

func TestAuthConfig(t *testing.T) {
	dir := t.TempDir()
	key, _ := writeKeyFile(t, dir, "k.pem", 0o600)
	loose, _ := writeKeyFile(t, dir, "loose.pem", 0o644)
	cust := func(extra string) string {
		return "customers:\n  - id: acme\n    networks: [192.0.2.1]\n    domains: [acme.example]\n" + extra
	}
	tests := []struct {
		name    string
		yaml    string
		wantErr []string // "line: text"
	}{
		{"defaults", cust(""), nil},
		{"full", `dns: {servers: [192.0.2.53], timeout: 500ms}
auth: {dkim: {max_signatures: 3}, dmarc: {require_alignment: true}, signing: {headers: [From, Subject], oversign: [From, Subject], expiration: 168h}}
` + cust("    require_alignment: false\n    dkim:\n      - {domain: acme.example, selector: s2026.gw, key_file: "+key+"}\n"), nil},
		{"signing without From", "auth:\n  signing:\n    headers: [Subject, Received]\n" + cust(""), []string{"3: auth.signing.headers: must include From", "3: auth.signing.headers[1]: Received must not be signed"}},
		{"short expiration", "auth:\n  signing:\n    expiration: 10m\n" + cust(""), []string{"3: auth.signing.expiration: 10m0s is too short"}},
		{"negative values", "auth:\n  dkim: {max_signatures: -1}\n  signing: {expiration: -1h}\n" + cust(""), []string{"2: auth.dkim.max_signatures: must not be negative", "3: auth.signing.expiration: must not be negative"}},
		{"bad header names", "auth:\n  signing:\n    headers: [From, \"Bad:Name\"]\n    oversign: [\"Sub ject\"]\n" + cust(""), []string{"3: auth.signing.headers[1]: bad header field name", "4: auth.signing.oversign[0]: bad header field name"}},
		{"unknown key", "auth:\n  dmarc:\n    require_alignmnt: true\n" + cust(""), []string{"3: auth.dmarc.require_alignmnt: unknown key \"require_alignmnt\" (did you mean require_alignment?)"}},
		{"type error", "auth:\n  signing:\n    expiration: soon\n" + cust(""), []string{"3: auth.signing.expiration: "}},
		{"bad keys", cust(`    dkim:
      - {domain: "*.acme.example", selector: "bad selector", key_file: ` + key + `}
      - {domain: acme.example, selector: s1, key_file: ` + filepath.Join(dir, "missing.pem") + `}
      - {domain: acme.example, selector: s2, key_file: ` + loose + `}
      - {domain: other.example, selector: s3}
      - {selector: s4, key_file: ` + key + `}
`), []string{
			"6: customers[0].dkim[0].domain: a signing domain is one domain",
			"6: customers[0].dkim[0].selector: bad selector",
			"7: customers[0].dkim[1].key_file: key file " + filepath.Join(dir, "missing.pem") + " does not exist",
			"8: customers[0].dkim[2].domain: domain \"acme.example\" already has a key",
			"8: customers[0].dkim[2].key_file: key file " + loose + " is readable by group or others (mode 0644)",
			"9: customers[0].dkim[3].key_file: key_file missing",
			"10: customers[0].dkim[4].domain: signing domain missing",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := config.Parse([]byte(tt.yaml), "a.yaml", sectionOpts)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				a, err := ConfigOf(cfg)
				if err != nil {
					t.Fatal(err)
				}
				if a.DKIM.MaxSignatures == 0 || len(a.Signing.Headers) == 0 {
					t.Fatalf("defaults missing: %+v", a)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), "a.yaml:"+w) {
					t.Errorf("errors lack %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestAuthConfigValues(t *testing.T) {
	cfg, err := config.Parse([]byte(`auth: {dkim: {max_signatures: 3}, dmarc: {require_alignment: true}, signing: {headers: [From, Subject], oversign: [From, Subject], expiration: 168h}}
customers: [{id: a, networks: [192.0.2.1], domains: [a.example]}]`), "a.yaml", sectionOpts)
	if err != nil {
		t.Fatal(err)
	}
	a, err := ConfigOf(cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := SigningConfig{Headers: []string{"From", "Subject"}, Oversign: []string{"From", "Subject"}, Expiration: 168 * time.Hour}
	if a.DKIM.MaxSignatures != 3 || !a.DMARC.RequireAlignment || !reflect.DeepEqual(a.Signing, want) {
		t.Fatalf("decoded %+v", a)
	}
}

func TestAuthDefaults(t *testing.T) {
	for _, yaml := range []string{
		"customers: [{id: a, networks: [192.0.2.1], domains: [a.example]}]",
		// An explicit 0 or null means the default, as it always has.
		"auth: {dkim: {max_signatures: 0}, signing: {headers: null, oversign: null}}\ncustomers: [{id: a, networks: [192.0.2.1], domains: [a.example]}]",
	} {
		cfg, err := config.Parse([]byte(yaml), "a.yaml", sectionOpts)
		if err != nil {
			t.Fatal(err)
		}
		a, err := ConfigOf(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if a.DKIM.MaxSignatures != DefaultDKIMMaxSignatures || a.DMARC.RequireAlignment || a.Signing.Expiration != 0 ||
			!reflect.DeepEqual(a.Signing.Headers, DefaultSignedHeaders) || !reflect.DeepEqual(a.Signing.Oversign, []string{"From"}) {
			t.Fatalf("%s: defaults %+v", yaml, a)
		}
	}
	// A config parsed without the section decodes it on demand.
	cfg, err := config.Parse([]byte("auth: {dkim: {max_signatures: 2}}\ncustomers: [{id: a, networks: [192.0.2.1], domains: [a.example]}]"), "a.yaml", config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if a, err := ConfigOf(cfg); err != nil || a.DKIM.MaxSignatures != 2 {
		t.Fatalf("on demand: %+v, %v", a, err)
	}
}

// TestKeyFilesReadOnce checks that a customer's key file is read when the
// customers are validated and that the signer takes the key read then:
// the file can be gone by the time the checks are built. A key file
// replaced on disk is read again when the customers are next validated
// (live directory), and a loosened mode is refused then.
func TestKeyFilesReadOnce(t *testing.T) {
	dir := t.TempDir()
	key, ek := writeKeyFile(t, dir, "k.pem", 0o600)
	cfg, err := config.Parse([]byte(`customers:
  - id: acme
    networks: [192.0.2.1]
    domains: [acme.example]
    dkim: [{domain: acme.example, selector: s1, key_file: `+key+`}]
`), "a.yaml", sectionOpts)
	if err != nil {
		t.Fatal(err)
	}
	saved, err := os.ReadFile(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(key); err != nil {
		t.Fatal(err)
	}
	ks, err := LoadKeys(cfg)
	if err != nil {
		t.Fatalf("keys after the file is gone: %v", err)
	}
	if got := ks["acme"]; len(got) != 1 || !ek.Equal(got[0].Signer) {
		t.Fatalf("keys %+v", ks)
	}

	// The live directory validates its customers again: the file is gone.
	if _, err := cfg.WithCustomers(cfg.Customers, sectionOpts); err == nil || !strings.Contains(err.Error(), "customers[0].dkim[0].key_file: key file "+key+" does not exist") {
		t.Fatalf("WithCustomers without the file: %v", err)
	}
	// Back, then replaced by another key: the new one is read.
	if err := os.WriteFile(key, saved, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := cfg.WithCustomers(cfg.Customers, sectionOpts); err != nil {
		t.Fatal(err)
	}
	_, ek2 := writeKeyFile(t, dir, "k2.pem", 0o600)
	if err := os.Rename(filepath.Join(dir, "k2.pem"), key); err != nil {
		t.Fatal(err)
	}
	live, err := cfg.WithCustomers(cfg.Customers, sectionOpts)
	if err != nil {
		t.Fatal(err)
	}
	ks, err = LoadKeys(live)
	if err != nil {
		t.Fatal(err)
	}
	if got := ks["acme"]; len(got) != 1 || !ek2.Equal(got[0].Signer) {
		t.Fatal("the replaced key file was not read again")
	}
	if err := os.Chmod(key, 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := cfg.WithCustomers(cfg.Customers, sectionOpts); err == nil || !strings.Contains(err.Error(), "readable by group or others") {
		t.Fatalf("WithCustomers with a loose key file: %v", err)
	}
}

// TestCheckCustomerLive checks that the live directory's customers get the
// same validation of their keys as the file's.
func TestCheckCustomerLive(t *testing.T) {
	cfg, err := config.Parse([]byte("customers: [{id: a, networks: [192.0.2.1], domains: [a.example]}]"), "a.yaml", sectionOpts)
	if err != nil {
		t.Fatal(err)
	}
	list := append([]config.Customer(nil), cfg.Customers...)
	list = append(list, config.Customer{ID: "b", Networks: []string{"192.0.2.2"}, Domains: []string{"b.example"},
		CustomerAuth: config.CustomerAuth{DKIM: []config.DKIMKey{{Domain: "b.example", Selector: "-bad"}}}})
	_, err = cfg.WithCustomers(list, sectionOpts)
	for _, w := range []string{"customers[1].dkim[0].selector: bad selector", "customers[1].dkim[0].key_file: key_file missing"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("WithCustomers: %v, want %q", err, w)
		}
	}
}
