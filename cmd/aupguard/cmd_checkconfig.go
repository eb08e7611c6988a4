package main

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/gateway"
	"github.com/aupguard/aupguard/internal/engine/policy"
)

func init() {
	register("check-config", "validate a config; print every error with its place, or the effective config", runCheckConfig)
}

func runCheckConfig(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check-config", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "/etc/aupguard/aupguard.yaml", "config file")
	quiet := fs.Bool("q", false, "print nothing on success")
	postfixDir := fs.String("postfix", "/etc/postfix", "Postfix configuration directory to compare local_submission with (\"\" skips it)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, err := config.Load(*path, gateway.ConfigOptions())
	if err != nil {
		var es config.Errors
		if errors.As(err, &es) {
			for _, e := range es {
				fmt.Fprintln(stderr, e.Error())
			}
			fmt.Fprintf(stderr, "%d error(s)\n", len(es))
		} else {
			fmt.Fprintln(stderr, err)
		}
		return 1
	}
	// Building the chain also checks what only the checks can: key files,
	// scripts, per-customer settings.
	deps, err := gateway.OpenDeps(cfg, nil, nil)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", *path, err)
		return 1
	}
	defer deps.Store.Close()
	st, err := gateway.Build(deps)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", *path, err)
		return 1
	}
	_ = st
	for _, w := range cfg.Warnings() {
		fmt.Fprintln(stderr, "warning: "+w.Error())
	}
	var postconf postconfFunc
	if *postfixDir != "" {
		postconf = runPostconf(*postfixDir)
	}
	hints, lerrs := localSubmissionReport(cfg, postconf, lookupUnixUser)
	for _, e := range lerrs {
		fmt.Fprintf(stderr, "%s: %s\n", *path, e)
	}
	if len(lerrs) > 0 {
		return 1
	}
	if !*quiet {
		for _, h := range hints {
			fmt.Fprintf(stderr, "%s: hint: %s\n", *path, h)
		}
	}
	if *quiet {
		return 0
	}
	out, err := effectiveConfig(cfg).Marshal()
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	fmt.Fprintf(stdout, "# %s: OK, effective config follows\n", *path)
	stdout.Write(out)
	return 0
}

// effectiveConfig is cfg as the gateway runs it, for printing: every check
// of the chain with enabled, on_error and each finding's action as they
// take effect (the spec's default, the check's action, the finding's own);
// each customer's mode and limits with the defaults filled in; the
// notifications switch. Nothing is left null.
func effectiveConfig(cfg *config.Config) *config.Config {
	cp := *cfg
	storeOnError := policy.Defer
	if a, ok := cfg.Store.OnError.Get(); ok {
		storeOnError = a
	}
	specs := map[string]policy.Spec{}
	for _, sp := range gateway.Specs() {
		specs[sp.Name] = sp
	}
	cp.Checks = make(map[string]config.CheckConfig, len(cfg.Chain))
	for _, name := range cfg.Chain {
		cc := cfg.Checks[name]
		on := cfg.CheckEnabled(name)
		out := config.CheckConfig{Enabled: &on, OnError: config.ActionOf(storeOnError), Findings: map[string]config.Action{}}
		if a, ok := cc.OnError.Get(); ok {
			out.OnError = config.ActionOf(a)
		}
		for _, f := range specs[name].Findings {
			a := f.Action
			if ca, ok := cc.Action.Get(); ok {
				a = ca
			}
			if fa, ok := cc.Findings[f.Name].Get(); ok {
				a = fa
			}
			out.Findings[f.Name] = config.ActionOf(a)
		}
		cp.Checks[name] = out
	}
	cp.Customers = make([]config.Customer, len(cfg.Customers))
	for i, c := range cfg.Customers {
		if c.Mode == "" {
			c.Mode = cfg.Defaults.Mode
		}
		c.Limits = cfg.Defaults.Limits.Merge(c.Limits)
		cp.Customers[i] = c
	}
	on := cfg.Notifications.Enabled == nil || *cfg.Notifications.Enabled
	cp.Notifications.Enabled = &on
	return &cp
}
