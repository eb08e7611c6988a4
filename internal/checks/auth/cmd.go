package auth

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"

	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/setup"
	"github.com/aupguard/aupguard/internal/resolver"
)

func runDKIM(env *setup.Env, args []string) int {
	stderr := env.Stderr
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: aupguard dkim keygen|record|rotate|status [flags]")
		return 2
	}
	switch args[0] {
	case "keygen":
		return runDKIMKeygen(env, args[1:])
	case "record":
		return runDKIMRecord(env, args[1:])
	case "rotate":
		return runDKIMRotate(env, args[1:])
	case "status":
		return runDKIMStatus(env, args[1:])
	}
	fmt.Fprintf(stderr, "aupguard dkim: unknown subcommand %q (want keygen, record, rotate or status)\n", args[0])
	return 2
}

func runDKIMKeygen(env *setup.Env, args []string) int {
	stdout, stderr := env.Stdout, env.Stderr
	fs := flag.NewFlagSet("dkim keygen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	typ := fs.String("type", "rsa", "key type: rsa or ed25519 (RFC 8463; not every receiver verifies it yet, pair it with an RSA key)")
	bits := fs.Int("bits", 2048, "RSA key size")
	out := fs.String("out", "", "private key file to create (mode 0600, PKCS#8 PEM)")
	domain := fs.String("domain", "", "signing domain (d=)")
	selector := fs.String("selector", "", "selector (s=)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: aupguard dkim keygen -out FILE -domain DOMAIN -selector SELECTOR [-type rsa|ed25519] [-bits N]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *out == "" || *domain == "" || *selector == "" || fs.NArg() != 0 {
		fs.Usage()
		return 2
	}
	key, err := newDKIMKey(*typ, *bits)
	if err != nil {
		fmt.Fprintf(stderr, "aupguard dkim keygen: %v\n", err)
		return 2
	}
	if err := writeSignerFile(*out, key); err != nil {
		fmt.Fprintf(stderr, "aupguard dkim keygen: %v\n", err)
		return 1
	}
	return printRecord(stdout, stderr, Key{Domain: *domain, Selector: *selector, Signer: key}, *out)
}

func runDKIMRecord(env *setup.Env, args []string) int {
	stdout, stderr := env.Stdout, env.Stderr
	fs := flag.NewFlagSet("dkim record", flag.ContinueOnError)
	fs.SetOutput(stderr)
	keyFile := fs.String("key", "", "private key file")
	domain := fs.String("domain", "", "signing domain (d=)")
	selector := fs.String("selector", "", "selector (s=)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: aupguard dkim record -key FILE -domain DOMAIN -selector SELECTOR")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *keyFile == "" || *domain == "" || *selector == "" || fs.NArg() != 0 {
		fs.Usage()
		return 2
	}
	key, err := ReadDKIMKey(*keyFile)
	if err != nil {
		fmt.Fprintf(stderr, "aupguard dkim record: %v\n", err)
		return 1
	}
	return printRecord(stdout, stderr, Key{Domain: *domain, Selector: *selector, Signer: key}, *keyFile)
}

// printRecord prints the zone-file line publishing k and the customer
// config entry that uses it.
func printRecord(stdout, stderr io.Writer, k Key, file string) int {
	line, err := zoneLine(k)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	fmt.Fprintf(stdout, "; publish in the zone of %s:\n%s\n", k.Domain, line)
	fmt.Fprintf(stdout, "; and give the customer in aupguard.yaml:\n;   dkim:\n;     - {domain: %s, selector: %s, key_file: %s}\n", k.Domain, k.Selector, file)
	return 0
}

func runAuthCheck(env *setup.Env, args []string) int {
	stdout, stderr := env.Stdout, env.Stderr
	fs := flag.NewFlagSet("auth-check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "/etc/aupguard/aupguard.yaml", "config file")
	asJSON := fs.Bool("json", false, "print the reports as JSON")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: aupguard auth-check [-config FILE] [-json] CUSTOMER...\n\nExit status 0 when every domain passes DMARC through the gateway, 1 otherwise.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return 2
	}
	cfg, ok := env.LoadConfig(*path)
	if !ok {
		return 1
	}
	r, err := resolver.New(cfg.DNS, clock.System{})
	if err != nil {
		fmt.Fprintf(stderr, "dns: %v\n", err)
		return 1
	}
	keys, err := LoadKeys(cfg)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	egress := config.Addrs(cfg.Provider.EgressIPs)
	status := 0
	all := map[string][]DomainReport{}
	for _, id := range fs.Args() {
		var cust *config.Customer
		for i := range cfg.Customers {
			if cfg.Customers[i].ID == id {
				cust = &cfg.Customers[i]
			}
		}
		if cust == nil {
			fmt.Fprintf(stderr, "aupguard auth-check: unknown customer %q\n", id)
			return 1
		}
		reps := Diagnose(context.Background(), r, egress, *cust, keys[id], cfg.DNS.Timeout)
		all[id] = reps
		for _, rep := range reps {
			if rep.Aligned == "" || rep.Err != "" {
				status = 1
			}
		}
		if !*asJSON {
			printReports(stdout, id, reps)
		}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(all)
	}
	return status
}

func printReports(w io.Writer, id string, reps []DomainReport) {
	fmt.Fprintf(w, "customer %s\n", id)
	for _, r := range reps {
		verdict := "passes DMARC through " + r.Aligned
		if r.Aligned == "" {
			verdict = "FAILS DMARC alignment"
		}
		dmarc := "no record"
		if r.DMARC != "" {
			dmarc = fmt.Sprintf("p=%s at %s (adkim=%s aspf=%s)", r.DMARC, r.DMARCRecord, r.ADKIM, r.ASPF)
		}
		fmt.Fprintf(w, "  %s: %s\n    SPF %s %s\n    DMARC %s\n", r.Domain, verdict, r.SPF, r.SPFDetail, dmarc)
		for _, k := range r.Keys {
			fmt.Fprintf(w, "    DKIM key %s._domainkey.%s: %s %s\n", k.Selector, k.Domain, k.State, k.Err)
		}
		if r.Err != "" {
			fmt.Fprintf(w, "    DNS error: %s\n", r.Err)
		}
		for _, f := range r.Fix {
			fmt.Fprintf(w, "    fix: %s\n", f)
		}
	}
}

// commands are the family's CLI: `aupguard dkim` and `aupguard auth-check`.
var commands = []setup.Command{
	{Name: "dkim", Summary: "create a DKIM signing key (keygen), print its DNS record (record), rotate a domain's key (rotate) and follow the rotation (status)",
		Run: func(args []string, env *setup.Env) int { return runDKIM(env, args) }},
	{Name: "auth-check", Summary: "check a customer's domains in the DNS: SPF for the egress addresses, DMARC, published signing keys, what to fix",
		Run: func(args []string, env *setup.Env) int { return runAuthCheck(env, args) }},
}
