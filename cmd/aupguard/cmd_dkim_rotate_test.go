package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	gm "github.com/d--j/go-milter"
	"github.com/emersion/go-msgauth/dkim"

	"github.com/aupguard/aupguard/internal/checks/auth"
	"github.com/aupguard/aupguard/internal/testkit/fakedns"
)

// TestDKIMRotateAndStatus walks the documented rotation (docs/auth.md):
// rotate writes a pending key (0600) and its record; a second rotation
// waits for it; the config using the directory passes check-config;
// status leaves a missing or mismatched record pending (exit 1 for the
// mismatch) and, once the record matches, makes the key active and the
// one before it retiring.
func TestDKIMRotateAndStatus(t *testing.T) {
	dir := t.TempDir()
	keys := filepath.Join(dir, "dkim")
	if err := os.Mkdir(keys, 0o700); err != nil {
		t.Fatal(err)
	}
	// As root, rotate gives what it writes to the owner of the key
	// directory (the gateway's user), so that the gateway can read it.
	owner := os.Getuid()
	if owner == 0 {
		owner = 65534
		if err := os.Chown(keys, owner, owner); err != nil {
			t.Fatal(err)
		}
	}
	srv := fakedns.Start(t, "")
	path := filepath.Join(dir, "aupguard.yaml")
	base := `
dns: {servers: ["` + srv.Addr() + `"], timeout: 500ms, negative_ttl: 1s, max_ttl: 1s}
store: {path: "` + filepath.Join(dir, "state") + `"}
optout: {unsubscribe: {listen: "off"}}
auth: {dkim: {rotation: {keys_dir: "` + keys + `", check_interval: 1s, retire_after: 48h}}}
customers:
  - id: acme
    networks: [127.0.0.0/16]
    domains: [acme.example]
`
	if err := os.WriteFile(path, []byte(base), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		rc := runMain(args, &out, &errb)
		return rc, out.String(), errb.String()
	}
	rc, out, errs := run("dkim", "rotate", "-config", path, "-domain", "acme.example", "-algorithm", "ed25519", "-selector", "one")
	if rc != 0 {
		t.Fatalf("rotate: %d %s", rc, errs)
	}
	first := zoneRecord(t, out)
	ddir := filepath.Join(keys, "acme.example")
	if fi, err := os.Stat(filepath.Join(ddir, "one.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file %v %v", fi, err)
	}
	for _, f := range []string{"", "one.key", "one.txt", "state.json"} {
		fi, err := os.Stat(filepath.Join(ddir, f))
		if err != nil {
			t.Fatal(err)
		}
		if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != owner {
			t.Errorf("%s/%s owned by %d, want the key directory's owner %d", ddir, f, st.Uid, owner)
		}
	}
	if txt, err := os.ReadFile(filepath.Join(ddir, "one.txt")); err != nil || !strings.Contains(out, strings.TrimSpace(string(txt))) {
		t.Fatalf("record file %q %v, printed %q", txt, err, out)
	}
	if rc, _, errs := run("dkim", "rotate", "-config", path, "-domain", "acme.example"); rc == 0 || !strings.Contains(errs, "still pending") {
		t.Fatalf("second rotation while one is pending: %d %s", rc, errs)
	}
	// The customer signs from the directory.
	rotated := base + "    dkim: [{domain: acme.example, rotated: true}]\n"
	if err := os.WriteFile(path, []byte(rotated), 0o600); err != nil {
		t.Fatal(err)
	}
	if rc, _, errs := run("check-config", "-q", "-config", path); rc != 0 {
		t.Fatalf("check-config with a rotated key: %d %s", rc, errs)
	}
	state := func() map[string]string {
		st, err := auth.ReadDomainState(keys, "acme.example")
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]string{}
		for _, k := range st.Selectors {
			m[k.Selector] = k.State
		}
		return m
	}
	if rc, out, errs := run("dkim", "status", "-config", path); rc != 0 || !strings.Contains(out, "DNS missing") || state()["one"] != auth.KeyPending {
		t.Fatalf("status before publishing: %d %s %s %v", rc, out, errs, state())
	}
	if err := srv.Set(first); err != nil {
		t.Fatal(err)
	}
	if rc, out, errs := run("dkim", "status", "-config", path, "-domain", "acme.example"); rc != 0 || state()["one"] != auth.KeyActive {
		t.Fatalf("status after publishing: %d %s %s %v", rc, out, errs, state())
	}

	rc, out, errs = run("dkim", "rotate", "-config", path, "-domain", "acme.example", "-selector", "two")
	if rc != 0 {
		t.Fatalf("second rotate: %d %s", rc, errs)
	}
	second := zoneRecord(t, out)
	// A record of another key at the new selector: never activated.
	wrong := strings.Replace(first, "one._domainkey", "two._domainkey", 1)
	if err := srv.Set(first + wrong); err != nil {
		t.Fatal(err)
	}
	if rc, out, _ := run("dkim", "status", "-config", path); rc != 1 || !strings.Contains(out, "mismatch") || state()["two"] != auth.KeyPending {
		t.Fatalf("status with a mismatched record: %d %s %v", rc, out, state())
	}
	if err := srv.Set(first + second); err != nil {
		t.Fatal(err)
	}
	rc, out, errs = run("dkim", "status", "-config", path)
	if rc != 0 || state()["two"] != auth.KeyActive || state()["one"] != auth.KeyRetiring || !strings.Contains(out, "keep its record until") {
		t.Fatalf("status after the second publication: %d %s %s %v", rc, out, errs, state())
	}
	for _, bad := range [][]string{
		{"dkim", "rotate", "-config", path, "-domain", "../etc"},
		{"dkim", "rotate", "-config", path, "-domain", "acme.example", "-algorithm", "dsa"},
		{"dkim", "rotate", "-config", path, "-domain", "acme.example", "-selector", "two"},
	} {
		if rc, _, _ := run(bad...); rc == 0 {
			t.Errorf("%v succeeded", bad)
		}
	}
	// A rotated key needs the directory: check-config names the place.
	noDir := strings.Replace(rotated, "rotation: {keys_dir: \""+keys+"\", ", "rotation: {", 1)
	if err := os.WriteFile(path, []byte(noDir), 0o600); err != nil {
		t.Fatal(err)
	}
	if rc, _, errs := run("check-config", "-q", "-config", path); rc == 0 || !strings.Contains(errs, ":10") || !strings.Contains(errs, "keys_dir is not set") {
		t.Fatalf("check-config without keys_dir: %d %s", rc, errs)
	}
}

// TestServeFleetSwitchesSelectorOnPublication runs two gateways (the real
// binary) over one key directory, as two MTAs of a fleet whose keys
// config management copies. After "dkim rotate" both keep signing with
// the current key, and their signatures verify (go-msgauth, records from
// the test's DNS); once the new record is published both sign with the
// new selector within check_interval + dns.negative_ttl, and those
// signatures verify too.
func TestServeFleetSwitchesSelectorOnPublication(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	dir := t.TempDir()
	keys := filepath.Join(dir, "dkim")
	if err := os.Mkdir(keys, 0o700); err != nil {
		t.Fatal(err)
	}
	srv := fakedns.Start(t, "")
	cfgFor := func(name, addr string) string {
		p := filepath.Join(dir, name+".yaml")
		c := `milter: {listen: "inet:` + addr + `"}
log: {format: text}
dns: {servers: ["` + srv.Addr() + `"], timeout: 500ms, negative_ttl: 1s, max_ttl: 1s}
store: {path: "` + filepath.Join(dir, name) + `"}
optout: {unsubscribe: {listen: "off"}}
admin: {listen: "off"}
auth: {dkim: {rotation: {keys_dir: "` + keys + `", check_interval: 1s}}}
chain: [dkim_sign]
customers:
  - id: acme
    networks: [127.0.0.0/16]
    domains: [acme.example]
    dkim: [{domain: acme.example, rotated: true}]
`
		if err := os.WriteFile(p, []byte(c), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	rotate := func(sel string) string {
		t.Helper()
		var out, errb bytes.Buffer
		if rc := runMain([]string{"dkim", "rotate", "-config", cfgFor("cli", "127.0.0.1:1"), "-domain", "acme.example", "-algorithm", "ed25519", "-selector", sel}, &out, &errb); rc != 0 {
			t.Fatalf("rotate: %s", errb.String())
		}
		return zoneRecord(t, out.String())
	}
	// The first key, published and recorded before the gateways start.
	one := rotate("one")
	if err := srv.Set(one); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if rc := runMain([]string{"dkim", "status", "-config", cfgFor("cli", "127.0.0.1:1")}, &out, &errb); rc != 0 {
		t.Fatalf("status: %s %s", out.String(), errb.String())
	}
	var gws []string
	for _, name := range []string{"a", "b"} {
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		addr := ln.Addr().String()
		ln.Close()
		startServe(t, bin, cfgFor(name, addr), addr)
		gws = append(gws, addr)
	}
	two := rotate("two")
	records := map[string]string{}
	for _, z := range []string{one, two} {
		f := strings.Fields(z)
		records[strings.TrimSuffix(f[0], ".")] = strings.Join(strings.Fields(strings.ReplaceAll(strings.Join(f[2:], " "), `"`, "")), " ")
	}
	for i, addr := range gws {
		if got := signedSelector(t, addr, records); got != "one" {
			t.Fatalf("gateway %d signs with %q before the new record is published", i, got)
		}
	}
	if err := srv.Set(one + two); err != nil {
		t.Fatal(err)
	}
	published := time.Now()
	for i, addr := range gws {
		for signedSelector(t, addr, records) != "two" {
			if time.Since(published) > 10*time.Second {
				t.Fatalf("gateway %d still signs with the old selector 10s after publication", i)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	if el := time.Since(published); el > 5*time.Second {
		t.Errorf("the fleet switched %v after publication; want within check_interval + negative_ttl (2s) + slack", el)
	}
}

// signedSelector sends one message of acme through the milter at addr
// and returns the selector of the DKIM-Signature added, after checking
// that it verifies against records.
func signedSelector(t *testing.T, addr string, records map[string]string) string {
	t.Helper()
	cs, err := gm.NewClient("tcp", addr, gm.WithActions(gm.AllClientSupportedActionMasks)).Session(gm.NewMacroBag())
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	cs.Conn("c", gm.FamilyInet, 1, "127.0.0.5")
	cs.Helo("c")
	if act, err := cs.Mail("a@acme.example", ""); err != nil || act.StopProcessing() {
		t.Fatalf("mail: %v %v", act, err)
	}
	if act, err := cs.Rcpt("b@example.org", ""); err != nil || act.StopProcessing() {
		t.Fatalf("rcpt: %v %v", act, err)
	}
	hdrs := [][2]string{{"From", " <a@acme.example>"}, {"To", " <b@example.org>"}, {"Subject", " rotation"}, {"Message-ID", " <r@acme.example>"}}
	cs.DataStart()
	for _, h := range hdrs {
		cs.HeaderField(h[0], h[1], nil)
	}
	cs.HeaderEnd()
	body := "Hello.\r\n"
	mods, act, err := cs.BodyReadFrom(strings.NewReader(body))
	if err != nil || act.Type != gm.ActionAccept {
		t.Fatalf("eom: %v %v", act, err)
	}
	var sig string
	for _, m := range mods {
		if strings.EqualFold(m.HeaderName, "DKIM-Signature") {
			sig = m.HeaderValue
		}
	}
	if sig == "" {
		t.Fatalf("no DKIM-Signature added: %+v", mods)
	}
	var msg strings.Builder
	msg.WriteString("DKIM-Signature:" + strings.ReplaceAll(strings.ReplaceAll(sig, "\r\n", "\n"), "\n", "\r\n") + "\r\n")
	for _, h := range hdrs {
		msg.WriteString(h[0] + ":" + h[1] + "\r\n")
	}
	msg.WriteString("\r\n" + body)
	vs, err := dkim.VerifyWithOptions(strings.NewReader(msg.String()), &dkim.VerifyOptions{LookupTXT: func(name string) ([]string, error) {
		if r, ok := records[strings.TrimSuffix(name, ".")]; ok {
			return []string{r}, nil
		}
		return nil, fmt.Errorf("no record %s", name)
	}})
	if err != nil || len(vs) != 1 || vs[0].Err != nil {
		t.Fatalf("signature does not verify: %v %+v\n%s", err, vs, msg.String())
	}
	return selectorOf(sig)
}

// selectorOf returns the s= tag of a DKIM-Signature value.
func selectorOf(sig string) string {
	for _, tag := range strings.Split(sig, ";") {
		if k, v, ok := strings.Cut(strings.TrimSpace(tag), "="); ok && k == "s" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
