package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestCheckConfigRefusesNamesAndChains runs check-config on configs that
// name a finding or a check the checks do not declare, and on chains that
// cannot work: each is refused with its file:line and a hint.
func TestCheckConfigRefusesNamesAndChains(t *testing.T) {
	const cust = "customers:\n  - id: acme\n    networks: [192.0.2.1]\n    domains: [acme.example]\n"
	tests := []struct {
		name string
		yaml string
		want []string // each a full line of stderr, with FILE for the path
	}{
		{"misspelled finding", "checks:\n  dmarc:\n    findings: {dmarc_rejct: accept}\n" + cust,
			[]string{`FILE:3: checks.dmarc.findings.dmarc_rejct: check "dmarc" has no finding "dmarc_rejct" (did you mean dmarc_reject?)`}},
		{"misspelled finding of a customer", cust + "    checks:\n      bulk_mail:\n        findings:\n          bulk_not_dkim_algned: accept\n",
			[]string{`FILE:8: customers[0].checks.bulk_mail.findings.bulk_not_dkim_algned: check "bulk_mail" has no finding "bulk_not_dkim_algned" (did you mean bulk_not_dkim_aligned?)`}},
		{"misspelled check in the chain", "chain:\n  - sender_identity\n  - rate_limt\n" + cust,
			[]string{`FILE:3: chain[1]: unknown check "rate_limt" (did you mean rate_limit?)`}},
		{"dmarc before its inputs", "chain: [dmarc, dkim, spf]\n" + cust,
			[]string{
				`FILE:1: chain[0]: check "dmarc" needs the results of "spf", which runs after it (move "spf" before "dmarc")`,
				`FILE:1: chain[0]: check "dmarc" needs the results of "dkim", which runs after it (move "dkim" before "dmarc")`,
			}},
		{"dmarc without dkim", "chain:\n  - spf\n  - dmarc\n" + cust,
			[]string{`FILE:3: chain[1]: check "dmarc" needs the results of "dkim", which is not in the chain (add it before "dmarc")`}},
		{"headers added after signing", "chain: [bulk_mail, dkim_sign, unsubscribe_link]\n" + cust,
			[]string{`FILE:1: chain[2]: check "unsubscribe_link" adds headers after "dkim_sign" signed them (move "dkim_sign" after "unsubscribe_link")`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "bad.yaml")
			if err := os.WriteFile(p, []byte(tt.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			var out, errOut bytes.Buffer
			if code := runMain([]string{"check-config", "-config", p}, &out, &errOut); code != 1 {
				t.Fatalf("exit %d, want 1; stderr:\n%s", code, errOut.String())
			}
			lines := strings.Split(strings.TrimSuffix(errOut.String(), "\n"), "\n")
			var want []string
			for _, w := range tt.want {
				want = append(want, strings.ReplaceAll(w, "FILE", p))
			}
			if len(lines) != len(want)+1 || lines[len(lines)-1] != strconv.Itoa(len(want))+" error(s)" {
				t.Fatalf("stderr:\n%s\nwant the lines:\n%s", errOut.String(), strings.Join(want, "\n"))
			}
			for i, w := range want {
				if lines[i] != w {
					t.Errorf("line %d:\n got %s\nwant %s", i, lines[i], w)
				}
			}
		})
	}
}

// TestCheckConfigDefaultChainWorks: the default chain (chain.list) and the
// example config pass the chain validation.
func TestCheckConfigDefaultChainWorks(t *testing.T) {
	p := filepath.Join(t.TempDir(), "ok.yaml")
	os.WriteFile(p, []byte("checks:\n  dmarc:\n    findings: {dmarc_reject: accept}\ncustomers:\n  - id: acme\n    networks: [192.0.2.1]\n    domains: [acme.example]\n"), 0o600)
	var out, errOut bytes.Buffer
	if code := runMain([]string{"check-config", "-q", "-config", p}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d:\n%s", code, errOut.String())
	}
}
