package mailauth_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aupguard/aupguard/config"
	"github.com/aupguard/aupguard/gateway"
)

// TestSigningKeyErrors: a customer's signing key that cannot be used
// stops the config from loading (check-config, serve, SIGHUP), with the
// config line and a reason the postmaster can act on; the factory of
// dkim_sign refuses it too when the file changes after validation.
func TestSigningKeyErrors(t *testing.T) {
	dir := keyDir(t)
	loose := filepath.Join(dir, "loose.pem")
	data, _ := os.ReadFile(filepath.Join(dir, "gateway-rsa.pem"))
	if err := os.WriteFile(loose, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(loose, 0o644); err != nil {
		t.Fatal(err)
	}
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, file, want string
	}{
		{"missing file", filepath.Join(dir, "nope.pem"), "does not exist"},
		{"group/world readable", loose, "readable by group or others"},
		{"weak RSA key", filepath.Join(dir, "weak-rsa1024.pem"), "too weak"},
		{"unparsable", garbage, "no PEM block"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			y := "chain: [dkim_sign]\ndns: {servers: [\"127.0.0.1:1\"]}\ncustomers:\n  - id: acme\n    networks: [192.0.2.0/28]\n    domains: [acme.example]\n    dkim:\n      - {domain: acme.example, selector: s1, key_file: " + tc.file + "}\n"
			_, err := config.Parse([]byte(y), "keys.yaml", gateway.ConfigOptions())
			if err == nil {
				t.Fatal("config with an unusable key accepted")
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "keys.yaml:") {
				t.Errorf("error lacks %q or its config line: %v", tc.want, err)
			}
		})
	}

	t.Run("key removed after validation: factory error", func(t *testing.T) {
		f := filepath.Join(dir, "later.pem")
		if err := os.WriteFile(f, data, 0o600); err != nil {
			t.Fatal(err)
		}
		y := "chain: [dkim_sign]\ndns: {servers: [\"127.0.0.1:1\"]}\ncustomers:\n  - id: acme\n    networks: [192.0.2.0/28]\n    domains: [acme.example]\n    dkim:\n      - {domain: acme.example, selector: s1, key_file: " + f + "}\n"
		cfg, err := config.Parse([]byte(y), "keys.yaml", gateway.ConfigOptions())
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
		deps, err := gateway.OpenDeps(cfg, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer deps.Store.Close()
		_, err = gateway.Build(deps)
		if err == nil || !strings.Contains(err.Error(), "does not exist") || !strings.Contains(err.Error(), "customers[0].dkim[0]") {
			t.Fatalf("want a factory error naming the key, got %v", err)
		}
	})
}
