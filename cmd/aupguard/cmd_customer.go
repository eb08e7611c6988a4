package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"time"
)

func init() {
	register("customer", "manage the live customer directory (customer add|set|remove|show|list|import|history) and opt-out flags (status|clear ID)", runCustomer)
}

const customerUsage = `usage: aupguard customer COMMAND [-config FILE] [flags]
  list                          every customer: source (config or store), mode, logins, networks
  show ID                       the definition, where it comes from, and its changes
  history ID                    the changes of one customer
  add [ID] [-f FILE] [-set FIELD=VALUE]... [-force]   add a customer to the store
  set ID [-f FILE] [-set FIELD=VALUE]... [-unset FIELD]... [-force]   change fields
  remove ID                     remove a store customer
  import FILE [-format F] [-force]   add or replace many customers, all or none: JSON ({"customers": [...]} or [...]),
                                NDJSON (.ndjson, .jsonl) read as a stream, or YAML (a customers: list, at most 1 MiB)
  status ID | clear ID          the opt-out standing; clear the flag
Fields are the config file's customers[] fields (limits.messages_per_hour, logins, mode...).
-force allows a network broader than directory.max_network_prefix, a catch-all login, a
public-suffix domain or an overlap with another customer (it sets force: true; each waived
rule is printed, logged by the gateways and kept in the change log).
With Redis the store is changed directly; with the memory store, the running gateway's admin API.`

func runCustomer(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "add", "set", "remove", "show", "list", "import", "history":
			return runDirectoryCommand(args[0], args[1:], stdout, stderr)
		}
	}
	if len(args) == 0 || (args[0] != "status" && args[0] != "clear") {
		fmt.Fprintln(stderr, customerUsage)
		return 2
	}
	sub := args[0]
	fs := flag.NewFlagSet("customer "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "/etc/aupguard/aupguard.yaml", "config file")
	asJSON := fs.Bool("json", false, "print JSON (status)")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fmt.Fprintf(stderr, "aupguard customer %s: give one customer ID\n", sub)
		return 2
	}
	id := fs.Arg(0)
	svc, closeFn, err := openOptout(*cfgPath)
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
		recordCLI(svc.Config, stderr, "flag.clear", id, "flagged", "cleared")
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
