package ratelimit

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/engine/setup"
	"github.com/aupguard/aupguard/internal/store"
)

func runQuota(env *setup.Env, args []string) int {
	stdout, stderr := env.Stdout, env.Stderr
	fs := flag.NewFlagSet("quota", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "/etc/aupguard/aupguard.yaml", "config file")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	login := fs.String("login", "", "also show this login's own limits and use (login_limits, login_overrides)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: aupguard quota [-config FILE] [-json] [-login LOGIN] CUSTOMER")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	cfg, ok := env.LoadConfig(*path)
	if !ok {
		return 1
	}
	h, err := store.Open(cfg.Store, clock.System{})
	if err != nil {
		fmt.Fprintf(stderr, "store: %v\n", err)
		return 1
	}
	defer h.Close()
	if h.Backend == store.Memory {
		fmt.Fprintln(stderr, "note: memory store: this shows the counters saved at the gateway's last stop (store.path), not the running gateway's; ask the admin API")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rep, err := QuotaOf(ctx, h, cfg, fs.Arg(0), *login)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		return 0
	}
	printQuota(stdout, rep)
	if *login != "" && rep.Login == "" {
		fmt.Fprintf(stdout, "\nlogin %s: customer %s sets no per-login limits\n", *login, rep.Customer)
	}
	return 0
}

func printQuota(w io.Writer, rep QuotaReport) {
	fmt.Fprintf(w, "customer %s at %s\n\n", rep.Customer, rep.Time.Format(time.RFC3339))
	printLimits(w, rep, rep.Limits)
	if rep.Login != "" {
		fmt.Fprintf(w, "\nlogin %s (its own limits)\n\n", rep.Login)
		printLimits(w, rep, rep.LoginLimits)
	}
	if rep.Reseller != "" {
		fmt.Fprintf(w, "\nreseller %s (all its customers together)\n\n", rep.Reseller)
		printLimits(w, rep, rep.ResellerLimits)
	}
	if s := rep.Spike; s != nil {
		state := "normal"
		if s.Spiking {
			state = "SPIKE"
		}
		fmt.Fprintf(w, "\nspike detection: %d messages in the last %s, threshold %.1f (factor %g x baseline %.1f/h, floor %d): %s\n",
			s.Count, s.Window, s.Threshold, s.Factor, s.Baseline, s.Floor, state)
	}
}

// printLimits prints one table of limits and their use.
func printLimits(w io.Writer, rep QuotaReport, limits []LimitUsage) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tKIND\tLIMIT\tUSED\tREMAINING\tNEXT FREE\tALL FREE")
	at := func(t *time.Time) string {
		if t == nil {
			return "now"
		}
		return t.Format(time.RFC3339) + " (in " + t.Sub(rep.Time).Round(time.Second).String() + ")"
	}
	for _, l := range limits {
		lim := "unlimited"
		if !l.Unlimited {
			lim = strconv.FormatInt(l.Limit, 10) + " " + l.Unit
			if l.Period != "" {
				lim += " / " + l.Period
			}
		}
		used, rem, next, free := "-", "-", "-", "-"
		if l.Used != nil {
			used, rem, next, free = strconv.FormatInt(*l.Used, 10), strconv.FormatInt(*l.Remaining, 10), at(l.NextFreeAt), at(l.FreeAt)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", l.Name, l.Kind, lim, used, rem, next, free)
	}
	tw.Flush()
}

// commands are the family's CLI: `aupguard quota`.
var commands = []setup.Command{
	{Name: "quota", Summary: "show a customer's volume limits, current use, remaining, and when each window frees",
		Run: func(args []string, env *setup.Env) int { return runQuota(env, args) }},
}
