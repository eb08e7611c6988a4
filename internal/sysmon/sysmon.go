// Package sysmon keeps the Go runtime's system monitor awake in the
// long-running gateway.
//
// The runtime's monitor thread (sysmon) goes into a deep sleep whenever
// every P is idle, and the next goroutine that enters a system call wakes
// it (a futex wake of another thread); once woken after a system call it
// polls every 20 µs for about a millisecond, betting that more will follow
// (runtime/proc.go, sysmon). A milter behind Postfix is exactly the
// process this bet loses on: between the packets of a transaction it is
// idle for a few hundred microseconds, many times per message, so each
// message paid about 8 futex calls and 11 nanosleeps for the monitor alone
// (strace -c under the shared harness's Postfix load: futex 10.3 and
// nanosleep 11.4 per message; 2.7 and 1.1 with the monitor kept awake) and
// a quarter to a third of the gateway's CPU (docs/performance.md).
//
// The runtime keeps the monitor out of deep sleep while a scheduler trace
// is on (GODEBUG schedtrace), so the daemon runs with schedtrace set to its
// largest period, 2147483647 ms (24.8 days): the monitor then backs off to
// a 10 ms period when there is nothing to do (about a hundred wake-ups a
// second when idle) and never needs waking. The runtime reads GODEBUG's
// schedtrace once, at start, so Reexec replaces the process with itself
// under that setting (same PID, same arguments, before anything else has
// started). The trace it enables prints one SCHED line to stderr at start
// on a machine up for more than 24.8 days, then one every 24.8 days,
// nothing else. An operator who sets schedtrace in
// GODEBUG (schedtrace=0 for the runtime's default behaviour) is left alone.
package sysmon

import (
	"fmt"
	"os"
	"strings"
	"syscall"
)

// Setting is what Env adds to GODEBUG.
const Setting = "schedtrace=2147483647"

// Env returns env (KEY=VALUE entries, as os.Environ) with Setting added to
// GODEBUG, and whether it changed it: not when GODEBUG already names
// schedtrace (the operator's choice stands).
func Env(env []string) ([]string, bool) {
	out := make([]string, 0, len(env)+1)
	found := false
	for _, kv := range env {
		v, ok := strings.CutPrefix(kv, "GODEBUG=")
		if !ok {
			out = append(out, kv)
			continue
		}
		for _, f := range strings.Split(v, ",") {
			if name, _, _ := strings.Cut(strings.TrimSpace(f), "="); name == "schedtrace" {
				return env, false
			}
		}
		found = true
		if strings.TrimSpace(v) == "" {
			out = append(out, "GODEBUG="+Setting)
		} else {
			out = append(out, "GODEBUG="+v+","+Setting)
		}
	}
	if !found {
		out = append(out, "GODEBUG="+Setting)
	}
	return out, true
}

// Reexec replaces the running program with itself, same arguments, under
// Env(os.Environ()) when that changes the environment. It returns nil
// without doing anything when GODEBUG already names schedtrace, and an
// error when the exec failed (the process then goes on with the runtime's
// defaults; nothing else is lost).
func Reexec() error {
	env, changed := Env(os.Environ())
	if !changed {
		return nil
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("sysmon: %w", err)
	}
	if err := syscall.Exec(exe, os.Args, env); err != nil {
		return fmt.Errorf("sysmon: exec %s: %w", exe, err)
	}
	return nil // not reached
}
