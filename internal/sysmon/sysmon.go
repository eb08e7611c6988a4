// Package sysmon decides how serve starts the Go runtime's system monitor:
// kept awake (the config's runtime.sysmon: awake, the default) or as the
// runtime has it (default).
//
// The runtime's monitor thread (sysmon) goes into a deep sleep whenever
// every P is idle, and the next goroutine that enters a system call wakes
// it (a futex wake of another thread); once woken it polls every 20 µs for
// about a millisecond, betting that more will follow (runtime/proc.go,
// sysmon). A milter behind Postfix is exactly the process this bet loses
// on: between the packets of a transaction it is idle for a few hundred
// microseconds, many times per message, so each message paid about 8 futex
// calls and 11 nanosleeps for the monitor alone (strace -c under the shared
// harness's Postfix load: futex 10.3 and nanosleep 11.4 per message; 2.7
// and 1.1 with the monitor kept awake). BenchmarkSysmonAwake
// (cmd/aupguard) measures the gain and fails when it is gone.
//
// The runtime keeps the monitor out of deep sleep while a scheduler trace
// is on (GODEBUG schedtrace), so "awake" is GODEBUG=schedtrace=2147483647,
// the largest period (24.8 days): the monitor then backs off to a 10 ms
// period when there is nothing to do and never needs waking. The trace it
// enables prints one SCHED line to stderr at start on a machine up for
// more than 24.8 days, then one every 24.8 days, nothing else.
//
// The runtime reads GODEBUG once, at start, so the setting belongs in the
// service's environment: the systemd unit (configs/aupguard.service) and
// the container image (Dockerfile) set it. Started without it and with
// runtime.sysmon awake, serve executes itself again under it (same PID,
// same arguments, before anything has started) and says so in its start
// log line. A GODEBUG that already names schedtrace is the operator's and
// stands, whatever the config says.
package sysmon

import (
	"fmt"
	"os"
	"strings"
	"syscall"
)

// Setting is what "awake" adds to GODEBUG.
const Setting = "schedtrace=2147483647"

// Modes of the config's runtime.sysmon.
const (
	Awake   = "awake"
	Default = "default"
)

// marker is set in the environment of the process that Exec starts, so
// that it can say it was executed again; Plan reads it.
const marker = "AUPGUARD_SYSMON_REEXEC"

// How a process came to run under the GODEBUG it has (Start.Source).
const (
	// SourceEnvironment: GODEBUG names schedtrace in the environment the
	// process was started with (the service's, the operator's).
	SourceEnvironment = "environment"
	// SourceReexec: serve executed itself again to add Setting.
	SourceReexec = "re-exec"
	// SourceRuntime: nothing set; the runtime's own behaviour.
	SourceRuntime = "runtime default"
)

// Start is what a process started with a mode under an environment does.
type Start struct {
	// Mode is the config's runtime.sysmon.
	Mode string
	// Reexec says the process must execute itself again under Env.
	Reexec bool
	// Env is the environment to execute under (Reexec only).
	Env []string
	// GODEBUG is the runtime's GODEBUG for this process (after a re-exec,
	// the new one's).
	GODEBUG string
	// Source says where GODEBUG's schedtrace comes from (Source*).
	Source string
}

// Plan returns what a process whose config asks for mode does under env
// (KEY=VALUE entries, as os.Environ): execute itself again when mode is
// Awake and GODEBUG does not name schedtrace; nothing otherwise.
func Plan(mode string, env []string) Start {
	godebug, _ := lookup(env, "GODEBUG")
	s := Start{Mode: mode, GODEBUG: godebug}
	switch {
	case namesSchedtrace(godebug):
		s.Source = SourceEnvironment
		if _, ok := lookup(env, marker); ok {
			s.Source = SourceReexec
		}
	case mode == Awake:
		s.Reexec = true
		s.Env = withSetting(env)
		s.GODEBUG, _ = lookup(s.Env, "GODEBUG")
		s.Source = SourceReexec
	default:
		s.Source = SourceRuntime
	}
	return s
}

// Attrs are the start log line's attributes (slog key-value pairs).
func (s Start) Attrs() []any {
	return []any{"sysmon", s.Mode, "godebug", s.GODEBUG, "source", s.Source}
}

// Exec replaces the running program with itself, same arguments, under
// env plus the marker that Plan reads. It returns only on failure (the
// process then goes on with the runtime's defaults; nothing else is lost).
func Exec(env []string) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("sysmon: %w", err)
	}
	env = append(env[:len(env):len(env)], marker+"=1")
	if err := syscall.Exec(exe, os.Args, env); err != nil {
		return fmt.Errorf("sysmon: exec %s: %w", exe, err)
	}
	return nil // not reached
}

// Forget removes the marker from the running process's environment, so
// that nothing it starts inherits it.
func Forget() { _ = os.Unsetenv(marker) }

func lookup(env []string, key string) (string, bool) {
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, key+"="); ok {
			return v, true
		}
	}
	return "", false
}

func namesSchedtrace(godebug string) bool {
	for _, f := range strings.Split(godebug, ",") {
		if name, _, _ := strings.Cut(strings.TrimSpace(f), "="); name == "schedtrace" {
			return true
		}
	}
	return false
}

// withSetting returns env with Setting added to GODEBUG (other GODEBUG
// settings kept).
func withSetting(env []string) []string {
	out := make([]string, 0, len(env)+1)
	found := false
	for _, kv := range env {
		v, ok := strings.CutPrefix(kv, "GODEBUG=")
		if !ok {
			out = append(out, kv)
			continue
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
	return out
}
