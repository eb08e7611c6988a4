// Command aupguard is an outbound mail policy gateway: a milter for the
// Postfix MTAs that relay a provider's customers' mail, enforcing the email
// sections of the provider's Acceptable Use Policy.
//
// Usage: aupguard COMMAND [flags]; "aupguard help" lists the commands.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sort"

	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/gateway"
	"github.com/aupguard/aupguard/internal/engine/setup"
	_ "github.com/aupguard/aupguard/internal/plugins" // registers the families
	"github.com/aupguard/aupguard/internal/sysmon"
)

// command is one subcommand. run gets the arguments after the command name
// and returns the process exit status.
type command struct {
	summary string
	run     func(args []string, stdout, stderr io.Writer) int
}

// commands is filled by the cmd_*.go files of this package at init.
var commands = map[string]command{}

func register(name, summary string, run func(args []string, stdout, stderr io.Writer) int) {
	if _, dup := commands[name]; dup {
		panic("aupguard: command registered twice: " + name)
	}
	commands[name] = command{summary: summary, run: run}
}

func main() {
	// serve may execute itself again to apply the config's runtime
	// setting (package sysmon); only here, never in runMain, which tests
	// call in-process.
	reexec = sysmon.Exec
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
	c, ok := commands[args[0]]
	if !ok {
		if fc, found := setup.Subcommand("", args[0]); found {
			return fc.Run(args[1:], commandEnv(stdout, stderr))
		}
		fmt.Fprintf(stderr, "aupguard: unknown command %q\n", args[0])
		usage(stderr)
		return 2
	}
	return c.run(args[1:], stdout, stderr)
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: aupguard COMMAND [flags]\n\ncommands:")
	summaries := map[string]string{}
	for n, c := range commands {
		summaries[n] = c.summary
	}
	for _, c := range setup.Commands("") {
		summaries[c.Name] = c.Summary
	}
	names := make([]string, 0, len(summaries))
	for n := range summaries {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-14s %s\n", n, summaries[n])
	}
}

// commandEnv is what a family's command gets from the binary.
func commandEnv(stdout, stderr io.Writer) *setup.Env {
	return &setup.Env{
		Stdin: os.Stdin, Stdout: stdout, Stderr: stderr,
		LoadConfig:    func(path string) (*config.Config, bool) { return loadConfig(path, stderr) },
		ConfigOptions: gateway.ConfigOptions(),
		OpenDeps: func(cfg *config.Config) (*setup.Deps, error) {
			return gateway.OpenDeps(cfg, clock.System{}, gateway.NewLogger(cfg.Log, stderr))
		},
		Audit: func(cfg *config.Config, action, target, before, after string) {
			recordCLI(cfg, stderr, action, target, before, after)
		},
	}
}

// loadConfig loads and validates the config for a command, printing every
// error with its place on stderr.
func loadConfig(path string, stderr io.Writer) (*config.Config, bool) {
	cfg, err := config.Load(path, gateway.ConfigOptions())
	if err != nil {
		var es config.Errors
		if errors.As(err, &es) {
			for _, e := range es {
				fmt.Fprintln(stderr, e.Error())
			}
		} else {
			fmt.Fprintln(stderr, err)
		}
		return nil, false
	}
	return cfg, true
}
