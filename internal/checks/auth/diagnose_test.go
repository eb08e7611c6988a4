package auth

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aupguard/aupguard/internal/engine/config"
)

func TestDiagnose(t *testing.T) {
	rk, ek, other := testKeys(t)
	zone := `
good.example.          TXT "v=spf1 ip4:203.0.113.0/24 -all"
_dmarc.good.example.   TXT "v=DMARC1; p=reject; adkim=s"
nospf.example.         TXT "v=spf1 -all"
_dmarc.nospf.example.  TXT "v=DMARC1; p=quarantine"
bare.example.          A   192.0.2.1
wrong.example.         TXT "v=spf1 -all"
` + keyRecord(t, "gw", "good.example", ek) + keyRecord(t, "gw", "wrong.example", other)
	r, _ := newResolver(t, zone)
	cust := config.Customer{ID: "acme", Domains: []string{"good.example", "*.nospf.example", "bare.example", "wrong.example"}}
	keys := []Key{
		{Domain: "good.example", Selector: "gw", Signer: ek},
		{Domain: "nospf.example", Selector: "gw", Signer: rk},
		{Domain: "wrong.example", Selector: "gw", Signer: rk},
	}
	reps := Diagnose(context.Background(), r, egress, cust, keys, time.Second)
	got := map[string]DomainReport{}
	for _, rep := range reps {
		got[rep.Domain] = rep
	}
	tests := []struct {
		domain, spf, dmarc, aligned, key string
		fixes                            []string
	}{
		{"good.example", "pass", "reject", "dkim+spf", "published", nil},
		{"nospf.example", "fail", "quarantine", "", "missing", []string{"publish gw._domainkey.nospf.example", "authorize 203.0.113.1, 203.0.113.2 in the SPF record of nospf.example"}},
		{"bare.example", "none", "", "", "", []string{"SPF record of bare.example (SPF none)", "have the gateway sign for bare.example", "publish a DMARC record: _dmarc.bare.example"}},
		{"wrong.example", "fail", "", "", "mismatch", []string{"publish gw._domainkey.wrong.example"}},
	}
	if len(reps) != len(tests) {
		t.Fatalf("%d reports: %+v", len(reps), reps)
	}
	for _, tt := range tests {
		t.Run(tt.domain, func(t *testing.T) {
			rep := got[tt.domain]
			if rep.SPF != tt.spf || rep.DMARC != tt.dmarc || rep.Aligned != tt.aligned {
				t.Fatalf("report %+v", rep)
			}
			if tt.key != "" && (len(rep.Keys) != 1 || rep.Keys[0].State != tt.key) {
				t.Fatalf("keys %+v, want %s", rep.Keys, tt.key)
			}
			all := strings.Join(rep.Fix, "\n")
			for _, f := range tt.fixes {
				if !strings.Contains(all, f) {
					t.Fatalf("fixes %q lack %q", rep.Fix, f)
				}
			}
			if tt.fixes == nil && len(rep.Fix) != 0 {
				t.Fatalf("unexpected fixes %q", rep.Fix)
			}
		})
	}
}
