package optout

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/setup"
	"github.com/aupguard/aupguard/internal/secrets"
	"github.com/aupguard/aupguard/internal/store"
)

const optoutUsage = `usage: aupguard optout COMMAND [flags] ARGS

  add     -list ID [-note TEXT] ADDRESS...   put addresses on a list
  remove  -list ID ADDRESS|HASH...           take addresses off a list
  check   -list ID ADDRESS                   exit 0 if suppressed, 1 if not
  list    -list ID [-json]                   print a list
  import  -list ID FILE|-                    import CSV (exit 1 if some lines were bad)
  export  -list ID [FILE|-]                  export CSV with a header row

-list is a customer id, or * for the provider-wide list. Every command
takes -config FILE (default /etc/aupguard/aupguard.yaml). With the memory
store, use the admin API while the gateway runs (it holds the store file).
`

// openOptout loads the config and opens the opt-out service on its store.
func openOptout(env *setup.Env, path string) (*Service, func(), error) {
	cfg, err := config.Load(path, env.ConfigOptions)
	if err != nil {
		return nil, nil, err
	}
	h, err := store.Open(cfg.Store, clock.System{})
	if err != nil {
		return nil, nil, err
	}
	key, ephemeral, err := secrets.Load(cfg.SecretFile, cfg.Store.Path)
	if err != nil {
		h.Close()
		return nil, nil, err
	}
	if ephemeral {
		h.Close()
		return nil, nil, errors.New("no secret_file and no store.path: opt-out hashes would not match the gateway's")
	}
	svc, err := NewService(h, cfg, key, clock.System{}, nil)
	if err != nil {
		h.Close()
		return nil, nil, err
	}
	return svc, func() {
		if c, ok := svc.Backend.(io.Closer); ok {
			c.Close()
		}
		h.Close()
	}, nil
}

func runOptout(env *setup.Env, args []string) int {
	stdout, stderr := env.Stdout, env.Stderr
	if len(args) == 0 {
		fmt.Fprint(stderr, optoutUsage)
		return 2
	}
	sub := args[0]
	fs := flag.NewFlagSet("optout "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "/etc/aupguard/aupguard.yaml", "config file")
	list := fs.String("list", "", "customer id, or * for the provider-wide list")
	note := fs.String("note", "", "note stored with added entries")
	asJSON := fs.Bool("json", false, "print JSON")
	switch sub {
	case "add", "remove", "check", "list", "import", "export":
	default:
		fmt.Fprintf(stderr, "aupguard optout: unknown command %q\n%s", sub, optoutUsage)
		return 2
	}
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if *list == "" {
		fmt.Fprintln(stderr, "aupguard optout: -list is required (customer id, or * for the provider-wide list)")
		return 2
	}
	svc, closeFn, err := openOptout(env, *cfgPath)
	if err != nil {
		fmt.Fprintf(stderr, "aupguard optout: %v\n", err)
		return 2
	}
	defer closeFn()
	ctx := context.Background()
	rest := fs.Args()
	need := func(n int) bool {
		if len(rest) < n {
			fmt.Fprintf(stderr, "aupguard optout %s: missing argument\n%s", sub, optoutUsage)
			return false
		}
		return true
	}
	switch sub {
	case "add":
		if !need(1) {
			return 2
		}
		status := 0
		for _, a := range rest {
			e, added, err := svc.Add(ctx, *list, a, SourceCLI, *note)
			if err != nil {
				fmt.Fprintf(stderr, "%s: %v\n", a, err)
				status = 1
				continue
			}
			what := "added"
			if !added {
				what = "already listed since " + e.Time.Format(time.RFC3339) + " (" + e.Source + ")"
			}
			fmt.Fprintf(stdout, "%s\t%s\t%s\n", a, e.Hash, what)
		}
		return status
	case "remove":
		if !need(1) {
			return 2
		}
		status := 0
		for _, a := range rest {
			ok, err := svc.Remove(ctx, *list, a)
			switch {
			case err != nil:
				fmt.Fprintf(stderr, "%s: %v\n", a, err)
				status = 1
			case !ok:
				fmt.Fprintf(stderr, "%s: not on list %s\n", a, *list)
				status = 1
			default:
				fmt.Fprintf(stdout, "%s\tremoved\n", a)
				if env.Audit != nil {
					env.Audit(svc.Config, "optout.remove", *list, MaskAddress(a), "removed")
				}
			}
		}
		return status
	case "check":
		if !need(1) {
			return 2
		}
		e, ok, err := svc.Check(ctx, *list, rest[0])
		if err != nil {
			fmt.Fprintf(stderr, "aupguard optout check: %v\n", err)
			return 2
		}
		if !ok {
			fmt.Fprintf(stdout, "%s: not suppressed for %s\n", rest[0], *list)
			return 1
		}
		if *asJSON {
			json.NewEncoder(stdout).Encode(e)
		} else {
			fmt.Fprintf(stdout, "%s: suppressed by list %s since %s (source %s) %s\n", rest[0], e.List, e.Time.Format(time.RFC3339), e.Source, e.Note)
		}
		return 0
	case "list":
		enc := json.NewEncoder(stdout)
		err := svc.Backend.Scan(ctx, *list, func(e Entry) error {
			if *asJSON {
				return enc.Encode(e)
			}
			addr := e.Address
			if addr == "" {
				addr = "-"
			}
			_, err := fmt.Fprintf(stdout, "%s\t%s\t%s\t%s\t%s\n", e.Hash, addr, e.Source, e.Time.Format(time.RFC3339), e.Note)
			return err
		})
		if err != nil {
			fmt.Fprintf(stderr, "aupguard optout list: %v\n", err)
			return 2
		}
		return 0
	case "import":
		if !need(1) {
			return 2
		}
		in, closeIn, err := openIn(rest[0])
		if err != nil {
			fmt.Fprintf(stderr, "aupguard optout import: %v\n", err)
			return 2
		}
		defer closeIn()
		start := time.Now()
		res, err := svc.Import(ctx, *list, in, SourceImport)
		for _, le := range res.Errors {
			fmt.Fprintf(stderr, "%s:%d: %s\n", rest[0], le.Line, le.Error)
		}
		if res.ErrorsTruncated {
			fmt.Fprintf(stderr, "(%d bad lines in all; only the first %d listed)\n", res.Bad, len(res.Errors))
		}
		fmt.Fprintf(stdout, "%d lines: %d added, %d already listed, %d bad (%s)\n", res.Lines, res.Added, res.Duplicates, res.Bad, time.Since(start).Round(time.Millisecond))
		if err != nil {
			fmt.Fprintf(stderr, "aupguard optout import: %v (entries before the failure were kept)\n", err)
			return 2
		}
		if res.Bad > 0 {
			return 1
		}
		return 0
	case "export":
		out := stdout
		if len(rest) > 0 && rest[0] != "-" {
			f, err := os.OpenFile(rest[0], os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
			if err != nil {
				fmt.Fprintf(stderr, "aupguard optout export: %v\n", err)
				return 2
			}
			defer f.Close()
			out = f
		}
		n, err := svc.Export(ctx, *list, out)
		if err != nil {
			fmt.Fprintf(stderr, "aupguard optout export: %v\n", err)
			return 2
		}
		if out != stdout {
			fmt.Fprintf(stdout, "%d entries exported\n", n)
		}
		return 0
	}
	return 2
}

// openIn opens a file, or stdin for "-".
func openIn(name string) (io.Reader, func(), error) {
	if name == "-" {
		return os.Stdin, func() {}, nil
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, nil, err
	}
	return f, func() { f.Close() }, nil
}

// commands are the family's CLI: `aupguard optout`, `aupguard complaint`
// and `aupguard customer status|clear`.
var commands = append([]setup.Command{
	{Name: "optout", Summary: "manage suppression lists (add, remove, check, list, import, export)",
		Run: func(args []string, env *setup.Env) int { return runOptout(env, args) }},
	{Name: "complaint", Summary: "ingest ARF complaint reports (complaint import FILE|-)",
		Run: func(args []string, env *setup.Env) int { return runComplaint(env, args) }},
}, customerCommands...)
