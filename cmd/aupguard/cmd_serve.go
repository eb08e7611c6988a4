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

	"github.com/aupguard/aupguard/internal/engine/daemon"
	"github.com/aupguard/aupguard/internal/sdnotify"
)

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
	d, err := daemon.New(daemon.Options{ConfigPath: *path, LogOutput: stderr, Notifier: sd, Version: versionString()})
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
