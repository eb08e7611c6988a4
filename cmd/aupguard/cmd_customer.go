package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/aupguard/aupguard/internal/engine/setup"
)

func init() {
	register("customer", "manage the live customer directory (customer add|set|remove|show|list|import|history) and opt-out flags (status|clear ID)", runCustomer)
}

const customerCommands = `usage: aupguard customer COMMAND [-config FILE] [flags]
  list                          every customer: source (config or store), mode, logins, networks
  show ID                       the definition, where it comes from, and its changes
  history ID                    the changes of one customer
  add [ID] [-f FILE] [-set FIELD=VALUE]... [-force]   add a customer to the store
  set ID [-f FILE] [-set FIELD=VALUE]... [-unset FIELD]... [-force]   change fields
  remove ID                     remove a store customer
  import FILE [-format F] [-force]   add or replace many customers, all or none: JSON ({"customers": [...]} or [...]),
                                NDJSON (.ndjson, .jsonl) read as a stream, or YAML (a customers: list, at most 1 MiB)`

const customerNotes = `
Fields are the config file's customers[] fields (limits.messages_per_hour, logins, mode...).
-force allows a network broader than directory.max_network_prefix, a catch-all login, a
public-suffix domain or an overlap with another customer (it sets force: true; each waived
rule is printed, logged by the gateways and kept in the change log).
With Redis the store is changed directly; with the memory store, the running gateway's admin API.`

// customerUsage is the customer command's usage, with the families'
// subcommands (opt-out's status and clear).
func customerUsage() string {
	var b strings.Builder
	b.WriteString(customerCommands)
	for _, c := range setup.Commands("customer") {
		fmt.Fprintf(&b, "\n  %-29s %s", c.Name+" ID", c.Summary)
	}
	b.WriteString(customerNotes)
	return b.String()
}

func runCustomer(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "add", "set", "remove", "show", "list", "import", "history":
			return runDirectoryCommand(args[0], args[1:], stdout, stderr)
		}
	}
	if len(args) > 0 {
		if c, ok := setup.Subcommand("customer", args[0]); ok {
			return c.Run(args[1:], commandEnv(stdout, stderr))
		}
	}
	fmt.Fprintln(stderr, customerUsage())
	return 2
}
