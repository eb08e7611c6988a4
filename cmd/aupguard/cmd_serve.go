package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/daemon"
	"github.com/aupguard/aupguard/internal/engine/gateway"
	"github.com/aupguard/aupguard/internal/sdnotify"
	"github.com/aupguard/aupguard/internal/sysmon"
)

// reexec executes the program again under an environment (sysmon.Exec).
// main sets it; in-process callers of runMain (the tests) leave it nil, so
// serve never replaces a test binary: it then runs as started.
var reexec func(env []string) error

// startRuntime applies the config's runtime.sysmon before anything has
// started: when it asks for the monitor kept awake and the environment
// lacks GODEBUG's schedtrace, the process executes itself again with it
// (package sysmon; the new process reads the config again). It returns the
// start's runtime state, logged once.
func startRuntime(mode string, stderr io.Writer) sysmon.Start {
	st := sysmon.Plan(mode, os.Environ())
	sysmon.Forget()
	if !st.Reexec {
		return st
	}
	if reexec != nil {
		err := reexec(st.Env) // returns only on failure
		fmt.Fprintf(stderr, "aupguard: runtime: %v (running with the Go runtime's defaults)\n", err)
	}
	// Running as started: in-process (the tests), or the exec failed.
	st = sysmon.Plan(sysmon.Default, os.Environ())
	st.Mode = mode
	return st
}

func init() {
	register("serve", "run the gateway (milter, admin API)", runServe)
}

func runServe(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "/etc/aupguard/aupguard.yaml", "config file")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file (go tool pprof reads it)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, err := config.Load(*path, gateway.ConfigOptions())
	if err != nil {
		fmt.Fprintf(stderr, "aupguard: %v\n", err)
		return 1
	}
	// First, before anything reads or changes the environment (the
	// service manager's variables below) or opens a file.
	rt := startRuntime(cfg.Runtime.Sysmon, stderr)
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintf(stderr, "aupguard: %v\n", err)
			return 1
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintf(stderr, "aupguard: cpu profile: %v\n", err)
			return 1
		}
		defer func() {
			pprof.StopCPUProfile()
			if err := f.Close(); err != nil {
				fmt.Fprintf(stderr, "aupguard: cpu profile: %v\n", err)
			}
		}()
	}
	// systemd (Type=notify) hands the notification socket and watchdog
	// interval over in the environment; unset, nothing is sent.
	sd, err := sdnotify.FromEnv()
	if err != nil {
		fmt.Fprintf(stderr, "aupguard: %v\n", err)
		return 1
	}
	d, err := daemon.New(daemon.Options{ConfigPath: *path, Config: cfg, LogOutput: stderr, Notifier: sd, Version: versionString(), Runtime: rt.Attrs()})
	if err != nil {
		fmt.Fprintf(stderr, "aupguard: %v\n", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		for range hup {
			_ = d.Reload() // errors are logged; the running config stays
		}
	}()
	if err := d.Run(ctx); err != nil {
		fmt.Fprintf(stderr, "aupguard: %v\n", err)
		return 1
	}
	return 0
}
