package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/aupguard/aupguard/internal/checks/auth"
	"github.com/aupguard/aupguard/internal/testkit/fakedns"
)

// zoneRecord turns the record printed by dkim keygen/record into a fakedns line.
func zoneRecord(t *testing.T, out string) string {
	t.Helper()
	m := regexp.MustCompile(`(?s)\n(\S+) IN TXT \( (.*?) \)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no record in %q", out)
	}
	return m[1] + " TXT " + strings.Join(strings.Fields(m[2]), " ") + "\n"
}

func TestDKIMKeygenAndAuthCheck(t *testing.T) {
	dir := t.TempDir()
	rsaFile, edFile := filepath.Join(dir, "rsa.pem"), filepath.Join(dir, "ed.pem")
	var out, errb bytes.Buffer
	if rc := runMain([]string{"dkim", "keygen", "-out", rsaFile, "-domain", "good.example", "-selector", "gw"}, &out, &errb); rc != 0 {
		t.Fatalf("keygen rsa: %d %s", rc, errb.String())
	}
	rsaRec := zoneRecord(t, out.String())
	if fi, err := os.Stat(rsaFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file %v %v", fi, err)
	}
	out.Reset()
	if rc := runMain([]string{"dkim", "keygen", "-type", "ed25519", "-out", edFile, "-domain", "bad.example", "-selector", "ed"}, &out, &errb); rc != 0 {
		t.Fatalf("keygen ed25519: %d %s", rc, errb.String())
	}
	if !strings.Contains(out.String(), "k=ed25519") {
		t.Fatalf("ed25519 record: %s", out.String())
	}
	// record prints the same DNS record for the same key.
	var rec bytes.Buffer
	if rc := runMain([]string{"dkim", "record", "-key", rsaFile, "-domain", "good.example", "-selector", "gw"}, &rec, &errb); rc != 0 || zoneRecord(t, rec.String()) != rsaRec {
		t.Fatalf("record: %d %q, keygen printed %q", rc, rec.String(), rsaRec)
	}
	for _, bad := range [][]string{
		{"dkim", "keygen", "-out", rsaFile, "-domain", "x", "-selector", "y"},                     // exists
		{"dkim", "keygen", "-bits", "1024", "-out", dir + "/w", "-domain", "x", "-selector", "y"}, // weak
		{"dkim", "record", "-key", dir + "/none", "-domain", "x", "-selector", "y"},
		{"dkim", "frobnicate"},
	} {
		if rc := runMain(bad, &out, &errb); rc == 0 {
			t.Errorf("%v succeeded", bad)
		}
	}

	srv := fakedns.Start(t, rsaRec+`
good.example.          TXT "v=spf1 ip4:192.0.2.10 -all"
_dmarc.good.example.   TXT "v=DMARC1; p=reject"
bad.example.           TXT "v=spf1 -all"
`)
	path := filepath.Join(dir, "aupguard.yaml")
	cfg := `
dns: {servers: ["` + srv.Addr() + `"], timeout: 500ms}
provider: {egress_ips: [192.0.2.10]}
customers:
  - id: good
    networks: [198.51.100.1]
    domains: [good.example]
    dkim: [{domain: good.example, selector: gw, key_file: ` + rsaFile + `}]
  - id: bad
    networks: [198.51.100.2]
    domains: [bad.example]
    dkim: [{domain: bad.example, selector: ed, key_file: ` + edFile + `}]
`
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if rc := runMain([]string{"auth-check", "-config", path, "good"}, &out, &errb); rc != 0 {
		t.Fatalf("auth-check good: %d\n%s%s", rc, out.String(), errb.String())
	}
	if !strings.Contains(out.String(), "good.example: passes DMARC through dkim+spf") {
		t.Fatalf("good:\n%s", out.String())
	}
	out.Reset()
	if rc := runMain([]string{"auth-check", "-config", path, "-json", "bad"}, &out, &errb); rc != 1 {
		t.Fatalf("auth-check bad: %d\n%s", rc, out.String())
	}
	var reps map[string][]auth.DomainReport
	if err := json.Unmarshal(out.Bytes(), &reps); err != nil {
		t.Fatal(err)
	}
	r := reps["bad"]
	if len(r) != 1 || r[0].Aligned != "" || r[0].Keys[0].State != "missing" || len(r[0].Fix) != 3 {
		t.Fatalf("bad report %+v", r)
	}
	if rc := runMain([]string{"auth-check", "-config", path, "nobody"}, &out, &errb); rc != 1 {
		t.Fatalf("unknown customer: %d", rc)
	}
}
