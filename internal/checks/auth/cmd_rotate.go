package auth

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/setup"
	"github.com/aupguard/aupguard/internal/resolver"
)

// newDKIMKey generates a signing key: rsa (of bits) or ed25519.
func newDKIMKey(typ string, bits int) (crypto.Signer, error) {
	switch typ {
	case "rsa":
		if bits < MinRSABits {
			return nil, fmt.Errorf("%d bits is too weak (want at least %d)", bits, MinRSABits)
		}
		return rsa.GenerateKey(rand.Reader, bits)
	case "ed25519":
		_, k, err := ed25519.GenerateKey(rand.Reader)
		return k, err
	}
	return nil, fmt.Errorf("unknown key type %q (want rsa or ed25519)", typ)
}

// writeSignerFile creates path (mode 0600, never over an existing file: a
// key may be in use) with key in PKCS#8 PEM.
func writeSignerFile(path string, key crypto.Signer) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if err := pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	return f.Close()
}

// zoneLine is the zone-file line publishing k's record.
func zoneLine(k Key) (string, error) {
	rec, err := k.DNSRecord()
	if err != nil {
		return "", err
	}
	var parts []string
	for s := rec; s != ""; {
		n := min(len(s), 250) // a DNS character-string holds 255 octets
		parts = append(parts, `"`+s[:n]+`"`)
		s = s[n:]
	}
	return fmt.Sprintf("%s._domainkey.%s. IN TXT ( %s )", k.Selector, strings.TrimSuffix(k.Domain, "."), strings.Join(parts, " ")), nil
}

// keysOwner makes the files the command writes belong to the owner of
// the key directory (the gateway's user) when it runs as root, so that
// the gateway can read them; otherwise they are the caller's.
type keysOwner struct{ uid, gid int }

func ownerOf(dir string) keysOwner {
	fi, err := os.Stat(dir)
	if err != nil || os.Geteuid() != 0 {
		return keysOwner{-1, -1}
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return keysOwner{-1, -1}
	}
	return keysOwner{int(st.Uid), int(st.Gid)}
}

func (o keysOwner) give(path string) error {
	if o.uid < 0 {
		return nil
	}
	return os.Lchown(path, o.uid, o.gid)
}

// rotationConfig returns dkim.rotation of cfg, with keys_dir set.
func rotationConfig(cfg *config.Config) (RotationConfig, error) {
	a, err := ConfigOf(cfg)
	if err != nil {
		return RotationConfig{}, err
	}
	if a.DKIM.Rotation.KeysDir == "" {
		return RotationConfig{}, errors.New("dkim.rotation.keys_dir is not set in the config (docs/md#key-rotation)")
	}
	return a.DKIM.Rotation, nil
}

func runDKIMRotate(env *setup.Env, args []string) int {
	stdout, stderr := env.Stdout, env.Stderr
	fs := flag.NewFlagSet("dkim rotate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "/etc/aupguard/aupguard.yaml", "config file (dkim.rotation.keys_dir)")
	domain := fs.String("domain", "", "signing domain (d=)")
	alg := fs.String("algorithm", "rsa", "key type: rsa or ed25519 (RFC 8463; not every receiver verifies it yet)")
	bits := fs.Int("bits", 2048, "RSA key size")
	selector := fs.String("selector", "", "selector of the new key (default: aupgYYYYMMDD, with a letter if taken)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: aupguard dkim rotate -domain DOMAIN [-config FILE] [-algorithm rsa|ed25519] [-bits N] [-selector S]\n\n"+
			"Writes the domain's next key (pending) and its DNS record into the key directory. The gateways sign\n"+
			"with it once they see the record published and matching; until then they keep the current key.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *domain == "" || fs.NArg() != 0 {
		fs.Usage()
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "aupguard dkim rotate: %v\n", err)
		return 1
	}
	cfg, ok := env.LoadConfig(*path)
	if !ok {
		return 1
	}
	rc, err := rotationConfig(cfg)
	if err != nil {
		return fail(err)
	}
	d := strings.ToLower(strings.TrimSuffix(*domain, "."))
	if ddir := DomainDir(rc.KeysDir, d); filepath.Base(ddir) != d {
		return fail(fmt.Errorf("bad domain %q", *domain))
	}
	key, err := newDKIMKey(*alg, *bits)
	if err != nil {
		return fail(err)
	}
	owner := ownerOf(rc.KeysDir)
	dir := DomainDir(rc.KeysDir, d)
	if err := os.Mkdir(dir, 0o700); err == nil {
		if err := owner.give(dir); err != nil {
			return fail(err)
		}
	} else if !errors.Is(err, os.ErrExist) {
		return fail(err)
	}
	st := &DomainState{Domain: d}
	if _, err := os.Stat(filepath.Join(dir, StateFile)); err == nil {
		if st, err = ReadDomainState(rc.KeysDir, d); err != nil {
			return fail(err)
		}
	}
	taken := map[string]bool{}
	for _, k := range st.Selectors {
		taken[strings.ToLower(k.Selector)] = true
		if k.State == KeyPending {
			return fail(fmt.Errorf("selector %s of %s is still pending: publish its record (%s) and run aupguard dkim status, or remove it from %s first",
				k.Selector, d, filepath.Join(dir, k.Selector+".txt"), filepath.Join(dir, StateFile)))
		}
	}
	sel := strings.ToLower(*selector)
	if sel == "" {
		base := "aupg" + time.Now().UTC().Format("20060102")
		sel = base
		for c := 'b'; taken[sel]; c++ {
			sel = base + string(c)
		}
	}
	if taken[sel] || filepath.Base(sel) != sel || strings.ContainsAny(sel, "/\\") {
		return fail(fmt.Errorf("selector %q is taken or invalid", sel))
	}
	k := Key{Domain: d, Selector: sel, Signer: key}
	line, err := zoneLine(k)
	if err != nil {
		return fail(err)
	}
	keyPath := KeyPath(rc.KeysDir, d, sel)
	if err := writeSignerFile(keyPath, key); err != nil {
		return fail(err)
	}
	recPath := filepath.Join(dir, sel+".txt")
	if err := os.WriteFile(recPath, []byte(line+"\n"), 0o644); err != nil {
		return fail(err)
	}
	algName := "rsa-sha256"
	if *alg == "ed25519" {
		algName = "ed25519-sha256"
	}
	st.Selectors = append(st.Selectors, KeyState{Selector: sel, Algorithm: algName, State: KeyPending, Created: time.Now().UTC().Truncate(time.Second)})
	if err := WriteDomainState(rc.KeysDir, st); err != nil {
		return fail(err)
	}
	for _, p := range []string{keyPath, recPath, filepath.Join(dir, StateFile)} {
		if err := owner.give(p); err != nil {
			return fail(err)
		}
	}
	fmt.Fprintf(stdout, "; new key %s (pending): %s\n; publish in the zone of %s (also in %s):\n%s\n", sel, keyPath, d, recPath, line)
	fmt.Fprintf(stdout, "; the gateways switch to %s within dkim.rotation.check_interval (%s) of seeing this record;\n", sel, rc.CheckInterval)
	fmt.Fprintf(stdout, "; until then they sign with the current key. Then run: aupguard dkim status -domain %s\n", d)
	return 0
}

func runDKIMStatus(env *setup.Env, args []string) int {
	stdout, stderr := env.Stdout, env.Stderr
	fs := flag.NewFlagSet("dkim status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "/etc/aupguard/aupguard.yaml", "config file (dkim.rotation, dns)")
	domain := fs.String("domain", "", "one signing domain (default: every domain in the key directory)")
	dry := fs.Bool("n", false, "show what DNS says, change nothing")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: aupguard dkim status [-config FILE] [-domain DOMAIN] [-n]\n\n"+
			"Looks every key of the rotated domains up in DNS (the gateway's resolver settings) and records\n"+
			"what it sees in the state files: a pending key published and matching becomes active, the keys\n"+
			"before it retiring (their records stay published for dkim.rotation.retire_after), then retired.\n"+
			"Exit status 1 when a published record does not match its key.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 0 {
		fs.Usage()
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "aupguard dkim status: %v\n", err)
		return 1
	}
	cfg, ok := env.LoadConfig(*path)
	if !ok {
		return 1
	}
	rc, err := rotationConfig(cfg)
	if err != nil {
		return fail(err)
	}
	r, err := resolver.New(cfg.DNS, clock.System{})
	if err != nil {
		return fail(fmt.Errorf("dns: %v", err))
	}
	var domains []string
	if *domain != "" {
		domains = []string{strings.ToLower(strings.TrimSuffix(*domain, "."))}
	} else {
		ents, err := os.ReadDir(rc.KeysDir)
		if err != nil {
			return fail(err)
		}
		for _, e := range ents {
			if e.IsDir() {
				if _, err := os.Stat(filepath.Join(rc.KeysDir, e.Name(), StateFile)); err == nil {
					domains = append(domains, e.Name())
				}
			}
		}
		sort.Strings(domains)
	}
	owner := ownerOf(rc.KeysDir)
	status := 0
	for _, d := range domains {
		st, err := ReadDomainState(rc.KeysDir, d)
		if err != nil {
			fmt.Fprintf(stderr, "aupguard dkim status: %v\n", err)
			status = 1
			continue
		}
		reps, err := Published(context.Background(), r, rc.KeysDir, d, cfg.DNS.Timeout)
		if err != nil {
			fmt.Fprintf(stderr, "aupguard dkim status: %s: %v\n", d, err)
			status = 1
			continue
		}
		var changes []string
		if !*dry {
			changes = Advance(st, reps, time.Now().UTC().Truncate(time.Second), rc.RetireAfter)
			if len(changes) > 0 {
				if err := WriteDomainState(rc.KeysDir, st); err != nil {
					return fail(err)
				}
				if err := owner.give(filepath.Join(DomainDir(rc.KeysDir, d), StateFile)); err != nil {
					return fail(err)
				}
			}
		}
		fmt.Fprintf(stdout, "domain %s\n", d)
		for _, k := range st.Selectors {
			rep, ok := reps[k.Selector]
			dns := "-"
			if ok {
				dns = rep.State
				if rep.Err != "" {
					dns += " (" + rep.Err + ")"
				}
				if rep.State == "mismatch" {
					status = 1
				}
			}
			extra := ""
			if k.State == KeyRetiring {
				extra = " keep its record until " + k.RetireAt.Format(time.RFC3339)
			}
			fmt.Fprintf(stdout, "  %-20s %-9s DNS %s%s\n", k.Selector, k.State, dns, extra)
		}
		for _, c := range changes {
			fmt.Fprintf(stdout, "  changed: %s\n", c)
		}
	}
	return status
}
