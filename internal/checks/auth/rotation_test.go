package auth

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/policy"
	"github.com/aupguard/aupguard/internal/resolver"
	"github.com/aupguard/aupguard/internal/testkit/fakedns"
)

// rotKeySpec is one key of a rotated domain written by a test.
type rotKeySpec struct {
	selector, state string
	signer          crypto.Signer
}

// writeRotated writes domain's key directory under keysDir as "aupguard
// dkim rotate" leaves it: SELECTOR.key (0600) and state.json.
func writeRotated(t *testing.T, keysDir, domain string, keys ...rotKeySpec) {
	t.Helper()
	dir := DomainDir(keysDir, domain)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	st := &DomainState{Domain: domain}
	for i, k := range keys {
		p := KeyPath(keysDir, domain, k.selector)
		if _, err := os.Stat(p); err != nil {
			der, err := x509.MarshalPKCS8PrivateKey(k.signer)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		st.Selectors = append(st.Selectors, KeyState{Selector: k.selector, State: k.state, Created: testNow.Add(time.Duration(i) * time.Hour)})
	}
	if err := WriteDomainState(keysDir, st); err != nil {
		t.Fatal(err)
	}
}

// rotatedCustomers are acme's entries signing example.com from the key
// directory.
var rotatedCustomers = []config.Customer{{ID: "acme", CustomerAuth: config.CustomerAuth{DKIM: []config.DKIMKey{{Domain: "example.com", Rotated: true}}}}}

// gatewayOf is one gateway's rotation and signer over keysDir, asking DNS
// through its own cache (with clk, so that a test expires answers).
type gatewayOf struct {
	ro     *Rotation
	signer *Signer
}

func newRotatingGateway(t *testing.T, keysDir, dnsAddr string, clk clock.Clock) gatewayOf {
	t.Helper()
	r, err := resolver.New(config.DNSConfig{Servers: []string{dnsAddr}, Timeout: 500 * time.Millisecond, NegativeTTL: time.Minute, MaxTTL: time.Minute}, clk)
	if err != nil {
		t.Fatal(err)
	}
	a := DefaultConfig()
	a.DKIM.Rotation.KeysDir = keysDir
	ro := NewRotation(a.DKIM.Rotation, r, time.Second, nil, clk)
	keys, err := a.KeysWith(rotatedCustomers, ro)
	if err != nil {
		t.Fatal(err)
	}
	return gatewayOf{ro: ro, signer: NewSigner(keys, SignOptions{Headers: DefaultSignedHeaders, Oversign: []string{"From"}}, clk)}
}

const rotMsg = "From: alice@example.com\r\nTo: bob@example.org\r\nSubject: hi\r\nDate: Mon, 23 Nov 2026 09:00:00 +0000\r\nMessage-ID: <1@example.com>\r\n\r\nHello.\r\n"

// signsWith signs rotMsg through g and returns the selector of the
// signature, after checking it verifies (go-msgauth) against the records
// DNS publishes; "" when the message is not signed.
func (g gatewayOf) signsWith(t *testing.T, records map[string]string) string {
	t.Helper()
	out := run(t, steps(g.signer), envelope{mailFrom: "alice@example.com"}, rotMsg)
	if out.eom.Action != policy.Accept {
		t.Fatalf("verdict %+v", out.eom)
	}
	s, ok := GatewaySigning(out.txn)
	added := out.txn.AddedHeaders()
	if !ok {
		if len(added) != 0 {
			t.Fatalf("no signing planned, yet headers added: %v", added)
		}
		return ""
	}
	vs := verifyGo(t, out.signed, records)
	if len(vs) != 1 || vs[0].Err != nil {
		t.Fatalf("signature with s=%s does not verify: %+v", s.Selector, vs[0])
	}
	return s.Selector
}

// TestRotationSwitchesOnlyWhenThePublishedRecordMatches follows one
// rotation through DNS: the gateway keeps signing with the old key (and
// its signatures verify) while the new record is missing or publishes
// another key, switches once it matches, and does not switch back when
// the record then disappears.
func TestRotationSwitchesOnlyWhenThePublishedRecordMatches(t *testing.T) {
	rk, ek, other := testKeys(t)
	keysDir := t.TempDir()
	writeRotated(t, keysDir, "example.com", rotKeySpec{"old", KeyActive, rk}, rotKeySpec{"new", KeyPending, ek})
	oldRec := keyRecord(t, "old", "example.com", rk)
	dns := fakedns.Start(t, oldRec)
	clk := clock.NewFake(testNow)
	gw := newRotatingGateway(t, keysDir, dns.Addr(), clk)
	oldTXT, _ := Key{Signer: rk}.DNSRecord()
	newTXT, _ := Key{Signer: ek}.DNSRecord()
	records := map[string]string{"old._domainkey.example.com": oldTXT}
	ctx := context.Background()

	steps := []struct {
		name, zone string
		want       string
	}{
		{"not published", oldRec, "old"},
		{"another key published", oldRec + keyRecord(t, "new", "example.com", other), "old"},
		{"revoked record published", oldRec + "new._domainkey.example.com. TXT \"v=DKIM1; k=ed25519; p=\"\n", "old"},
		{"matching record published", oldRec + keyRecord(t, "new", "example.com", ek), "new"},
		{"record gone again", oldRec, "new"},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if err := dns.Set(st.zone); err != nil {
				t.Fatal(err)
			}
			clk.Advance(2 * time.Minute) // past every cached answer
			gw.ro.Check(ctx)
			if st.want == "new" {
				records["new._domainkey.example.com"] = newTXT
			}
			if got := gw.signsWith(t, records); got != st.want {
				t.Fatalf("signed with %q, want %q", got, st.want)
			}
		})
	}
}

// TestRotationFleetSharesOneDirectory: two gateways read the same key
// directory (as config management copies it) and ask the same DNS; a
// key added to the directory while they run is picked up, neither uses
// it before its record is published, and both use it after.
func TestRotationFleetSharesOneDirectory(t *testing.T) {
	rk, ek, _ := testKeys(t)
	keysDir := t.TempDir()
	writeRotated(t, keysDir, "example.com", rotKeySpec{"old", KeyActive, rk})
	oldRec := keyRecord(t, "old", "example.com", rk)
	dns := fakedns.Start(t, oldRec)
	clk := clock.NewFake(testNow)
	a := newRotatingGateway(t, keysDir, dns.Addr(), clk)
	b := newRotatingGateway(t, keysDir, dns.Addr(), clk)
	oldTXT, _ := Key{Signer: rk}.DNSRecord()
	newTXT, _ := Key{Signer: ek}.DNSRecord()
	records := map[string]string{"old._domainkey.example.com": oldTXT, "new._domainkey.example.com": newTXT}
	ctx := context.Background()
	both := func(t *testing.T, want string) {
		t.Helper()
		clk.Advance(2 * time.Minute)
		a.ro.Check(ctx)
		b.ro.Check(ctx)
		for i, g := range []gatewayOf{a, b} {
			if got := g.signsWith(t, records); got != want {
				t.Fatalf("gateway %d signs with %q, want %q", i, got, want)
			}
		}
	}
	both(t, "old")
	// The operator rotates on one host; the directory reaches both.
	writeRotated(t, keysDir, "example.com", rotKeySpec{"old", KeyActive, rk}, rotKeySpec{"new", KeyPending, ek})
	both(t, "old")
	if err := dns.Set(oldRec + keyRecord(t, "new", "example.com", ek)); err != nil {
		t.Fatal(err)
	}
	both(t, "new")
	// "aupguard dkim status" records it: new active, old retiring. Both
	// keep signing with new, also a gateway that starts afresh.
	st, err := ReadDomainState(keysDir, "example.com")
	if err != nil {
		t.Fatal(err)
	}
	reps, err := Published(ctx, a.ro.r, keysDir, "example.com", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if ch := Advance(st, reps, testNow, DefaultRetireAfter); len(ch) != 2 {
		t.Fatalf("changes %q", ch)
	}
	if err := WriteDomainState(keysDir, st); err != nil {
		t.Fatal(err)
	}
	both(t, "new")
	fresh := newRotatingGateway(t, keysDir, dns.Addr(), clk)
	if got := fresh.signsWith(t, records); got != "new" {
		t.Fatalf("a gateway started after the status signs with %q", got)
	}
}

// TestRotationRunSwitchesWithinTheCheckInterval runs the background loop
// (as the daemon does through setup.Shared) with a short interval and
// the system clock: once the record is published, the switch comes
// within the interval (plus the negative cache time, here 1s).
func TestRotationRunSwitchesWithinTheCheckInterval(t *testing.T) {
	rk, ek, _ := testKeys(t)
	keysDir := t.TempDir()
	writeRotated(t, keysDir, "example.com", rotKeySpec{"old", KeyActive, rk}, rotKeySpec{"new", KeyPending, ek})
	oldRec := keyRecord(t, "old", "example.com", rk)
	dns := fakedns.Start(t, oldRec)
	r, err := resolver.New(config.DNSConfig{Servers: []string{dns.Addr()}, Timeout: 500 * time.Millisecond, NegativeTTL: time.Second, MaxTTL: time.Second}, clock.System{})
	if err != nil {
		t.Fatal(err)
	}
	ro := NewRotation(RotationConfig{KeysDir: keysDir, CheckInterval: 200 * time.Millisecond}, r, time.Second, nil, nil)
	d, err := ro.domain("example.com")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); ro.Run(ctx) }()
	defer func() { cancel(); <-done }()
	// Several rounds pass without a switch.
	for dns.Queries("new._domainkey.example.com.") < 2 {
		time.Sleep(20 * time.Millisecond)
	}
	if k, _ := d.current(); k.Selector != "old" {
		t.Fatalf("switched to %q before the record was published", k.Selector)
	}
	if err := dns.Set(oldRec + keyRecord(t, "new", "example.com", ek)); err != nil {
		t.Fatal(err)
	}
	published := time.Now()
	deadline := published.Add(10 * time.Second)
	for {
		if k, _ := d.current(); k.Selector == "new" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no switch within 10s of publishing")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if el := time.Since(published); el > time.Second+200*time.Millisecond+time.Second {
		t.Errorf("switched %v after publishing; want within negative_ttl + check_interval (+1s slack)", el)
	}
}

// TestRotationFirstKeyWaitsForItsRecord: a domain whose only key is
// pending is not signed (a signature nobody can verify helps no one)
// until its record is published.
func TestRotationFirstKeyWaitsForItsRecord(t *testing.T) {
	_, ek, _ := testKeys(t)
	keysDir := t.TempDir()
	writeRotated(t, keysDir, "example.com", rotKeySpec{"first", KeyPending, ek})
	dns := fakedns.Start(t, "")
	clk := clock.NewFake(testNow)
	gw := newRotatingGateway(t, keysDir, dns.Addr(), clk)
	gw.ro.Check(context.Background())
	if got := gw.signsWith(t, nil); got != "" {
		t.Fatalf("signed with unpublished %q", got)
	}
	if err := dns.Set(keyRecord(t, "first", "example.com", ek)); err != nil {
		t.Fatal(err)
	}
	clk.Advance(2 * time.Minute)
	gw.ro.Check(context.Background())
	rec, _ := Key{Signer: ek}.DNSRecord()
	if got := gw.signsWith(t, map[string]string{"first._domainkey.example.com": rec}); got != "first" {
		t.Fatalf("signed with %q after publishing", got)
	}
}

// TestRotationHostileDirectory: a broken or hostile key directory is
// refused at load with the reason, and once running, a directory that
// breaks (a half-copied sync) keeps the keys read before.
func TestRotationHostileDirectory(t *testing.T) {
	rk, ek, _ := testKeys(t)
	for _, tc := range []struct {
		name  string
		state string
		mode  os.FileMode
		want  string
	}{
		{"selector escapes the directory", `{"domain":"example.com","selectors":[{"selector":"../../../etc/x","state":"active"}]}`, 0o600, "bad selector"},
		{"unknown state", `{"domain":"example.com","selectors":[{"selector":"old","state":"live"}]}`, 0o600, "unknown state"},
		{"another domain's file", `{"domain":"evil.example","selectors":[{"selector":"old","state":"active"}]}`, 0o600, "names domain"},
		{"unknown field", `{"domain":"example.com","selectors":[],"key":"x"}`, 0o600, "unknown field"},
		{"only retired keys", `{"domain":"example.com","selectors":[{"selector":"old","state":"retired"}]}`, 0o600, "no key that is not retired"},
		{"key readable by others", `{"domain":"example.com","selectors":[{"selector":"old","state":"active"}]}`, 0o644, "readable by group or others"},
		{"truncated", `{"domain":"example.com","selec`, 0o600, "unexpected EOF"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			keysDir := t.TempDir()
			writeRotated(t, keysDir, "example.com", rotKeySpec{"old", KeyActive, rk})
			if err := os.Chmod(KeyPath(keysDir, "example.com", "old"), tc.mode); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(DomainDir(keysDir, "example.com"), StateFile), []byte(tc.state), 0o600); err != nil {
				t.Fatal(err)
			}
			a := DefaultConfig()
			a.DKIM.Rotation.KeysDir = keysDir
			_, err := a.KeysWith(rotatedCustomers, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want %q", err, tc.want)
			}
		})
	}
	t.Run("broken while running", func(t *testing.T) {
		keysDir := t.TempDir()
		writeRotated(t, keysDir, "example.com", rotKeySpec{"old", KeyActive, rk}, rotKeySpec{"new", KeyPending, ek})
		dns := fakedns.Start(t, keyRecord(t, "old", "example.com", rk))
		gw := newRotatingGateway(t, keysDir, dns.Addr(), clock.NewFake(testNow))
		if err := os.WriteFile(filepath.Join(DomainDir(keysDir, "example.com"), StateFile), []byte("{"), 0o600); err != nil {
			t.Fatal(err)
		}
		gw.ro.Check(context.Background())
		rec, _ := Key{Signer: rk}.DNSRecord()
		if got := gw.signsWith(t, map[string]string{"old._domainkey.example.com": rec}); got != "old" {
			t.Fatalf("signs with %q after the state file broke", got)
		}
	})
	t.Run("domain names another directory", func(t *testing.T) {
		if d := DomainDir("/k", ".."); d != "/k/invalid-domain" {
			t.Fatalf("DomainDir(..) = %s", d)
		}
		if d := DomainDir("/k", "a/../../etc"); d != "/k/invalid-domain" {
			t.Fatalf("DomainDir(a/../../etc) = %s", d)
		}
	})
}

// TestAdvance pins the state machine "aupguard dkim status" applies.
func TestAdvance(t *testing.T) {
	now := testNow
	pub := map[string]KeyReport{"a": {State: "published"}, "b": {State: "published"}}
	tests := []struct {
		name    string
		states  []string // of selectors a, b
		reports map[string]KeyReport
		at      time.Time
		want    []string
	}{
		{"new published: active, old retiring", []string{KeyActive, KeyPending}, pub, now, []string{KeyRetiring, KeyActive}},
		{"new not published: nothing", []string{KeyActive, KeyPending}, map[string]KeyReport{"a": {State: "published"}, "b": {State: "missing"}}, now, []string{KeyActive, KeyPending}},
		{"new mismatched: nothing", []string{KeyActive, KeyPending}, map[string]KeyReport{"a": {State: "published"}, "b": {State: "mismatch"}}, now, []string{KeyActive, KeyPending}},
		{"retiring before its time stays", []string{KeyRetiring, KeyActive}, pub, now.Add(DefaultRetireAfter - time.Second), []string{KeyRetiring, KeyActive}},
		{"retiring after its time retired", []string{KeyRetiring, KeyActive}, pub, now.Add(DefaultRetireAfter), []string{KeyRetired, KeyActive}},
		{"first key published", []string{KeyPending}, pub, now, []string{KeyActive}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := &DomainState{Domain: "example.com"}
			for i, s := range tc.states {
				k := KeyState{Selector: string(rune('a' + i)), State: s}
				if s == KeyRetiring {
					k.RetireAt = now.Add(DefaultRetireAfter)
				}
				st.Selectors = append(st.Selectors, k)
			}
			Advance(st, tc.reports, tc.at, DefaultRetireAfter)
			for i, w := range tc.want {
				if st.Selectors[i].State != w {
					t.Fatalf("selector %s: %s, want %s", st.Selectors[i].Selector, st.Selectors[i].State, w)
				}
			}
		})
	}
}

// TestRotationKeysArriveAfterTheConfig: config management may deliver the
// config before the key directory; the domain is then not signed, and
// once the keys arrive and their record is published it is.
func TestRotationKeysArriveAfterTheConfig(t *testing.T) {
	_, ek, _ := testKeys(t)
	keysDir := t.TempDir()
	dns := fakedns.Start(t, keyRecord(t, "k1", "example.com", ek))
	clk := clock.NewFake(testNow)
	gw := newRotatingGateway(t, keysDir, dns.Addr(), clk)
	gw.ro.Check(context.Background())
	if got := gw.signsWith(t, nil); got != "" {
		t.Fatalf("signed with %q without keys", got)
	}
	writeRotated(t, keysDir, "example.com", rotKeySpec{"k1", KeyPending, ek})
	gw.ro.Check(context.Background())
	rec, _ := Key{Signer: ek}.DNSRecord()
	if got := gw.signsWith(t, map[string]string{"k1._domainkey.example.com": rec}); got != "k1" {
		t.Fatalf("signed with %q once the keys arrived", got)
	}
}
