package optout

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"time"

	"github.com/aupguard/aupguard/internal/engine/setup"
)

// customerCommands are `aupguard customer status ID` (a customer's
// opt-out standing) and `aupguard customer clear ID` (clear its flag).
var customerCommands = []setup.Command{
	{Parent: "customer", Name: "status", Summary: "the customer's opt-out standing: flag, opted-out sends, complaint rate",
		Run: func(args []string, env *setup.Env) int { return runCustomerStanding(env, "status", args) }},
	{Parent: "customer", Name: "clear", Summary: "clear the customer's opt-out flag",
		Run: func(args []string, env *setup.Env) int { return runCustomerStanding(env, "clear", args) }},
}

// runCustomerStanding is `aupguard customer status|clear ID`.
func runCustomerStanding(env *setup.Env, sub string, args []string) int {
	stdout, stderr := env.Stdout, env.Stderr
	fs := flag.NewFlagSet("customer "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "/etc/aupguard/aupguard.yaml", "config file")
	asJSON := fs.Bool("json", false, "print JSON (status)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fmt.Fprintf(stderr, "aupguard customer %s: give one customer ID\n", sub)
		return 2
	}
	id := fs.Arg(0)
	svc, closeFn, err := openOptout(env, *cfgPath)
	if err != nil {
		fmt.Fprintf(stderr, "aupguard customer: %v\n", err)
		return 2
	}
	defer closeFn()
	known := false
	for _, c := range svc.Config.Customers {
		known = known || c.ID == id
	}
	if !known {
		fmt.Fprintf(stderr, "aupguard customer: warning: %q is not a customer in the config\n", id)
	}
	ctx := context.Background()
	if sub == "clear" {
		ok, err := svc.Clear(ctx, id)
		if err != nil {
			fmt.Fprintf(stderr, "aupguard customer clear: %v\n", err)
			return 2
		}
		if !ok {
			fmt.Fprintf(stdout, "%s was not flagged (opted-out send count reset)\n", id)
			return 0
		}
		fmt.Fprintf(stdout, "%s: flag cleared\n", id)
		if env.Audit != nil {
			env.Audit(svc.Config, "flag.clear", id, "flagged", "cleared")
		}
		return 0
	}
	st, err := svc.Status(ctx, id)
	if err != nil {
		fmt.Fprintf(stderr, "aupguard customer status: %v\n", err)
		return 2
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(st)
		return 0
	}
	flag := "no"
	if st.Flag != nil {
		flag = fmt.Sprintf("yes, %s since %s (%d sends to opted-out recipients)", st.Flag.Reason, st.Flag.Since.Format(time.RFC3339), st.Flag.Hits)
	}
	fmt.Fprintf(stdout, "customer:         %s\nflagged:          %s\nopted-out sends:  %d (flag at %d, window %s)\ncomplaints:       %d of %d delivered = %.3f%% (%s, window %s)\nsuppressed:       %d addresses on its own list\n",
		id, flag, st.OptedOutSends, st.FlagThreshold, svc.Settings.Escalation.Width, st.Complaints, st.Delivered, st.ComplaintRate*100, st.RateLevel, svc.Settings.Rate.Width, st.ListSize)
	return 0
}
