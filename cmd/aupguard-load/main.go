// Command aupguard-load holds the load-generation tools that measure
// aupguard and are not part of the gateway's binary: a milter-protocol load
// tool (bench), a do-nothing milter to compare against (nullmilter) and a
// generator of configs with many customers (gen-config).
//
// Usage: aupguard-load COMMAND [flags]; "aupguard-load help" lists the
// commands.
package main

import (
	"fmt"
	"io"
	"os"
)

// command is one subcommand. run gets the arguments after the command name
// and returns the process exit status.
type command struct {
	name, summary string
	run           func(args []string, stdout, stderr io.Writer) int
}

var commands = []command{
	{"bench", "load-test a milter over the milter protocol, as an MTA would", runBench},
	{"nullmilter", "run a do-nothing milter (accepts at end of message) to compare against", runNullMilter},
	{"gen-config", "write a config with many generated customers to stdout", runGenConfig},
}

func main() {
	os.Exit(runMain(os.Args[1:], os.Stdout, os.Stderr))
}

func runMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands {
		if c.name == args[0] {
			return c.run(args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "aupguard-load: unknown command %q\n", args[0])
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: aupguard-load COMMAND [flags]\n\ncommands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-12s %s\n", c.name, c.summary)
	}
}
