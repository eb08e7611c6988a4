package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	gm "github.com/d--j/go-milter"

	"github.com/aupguard/aupguard/internal/sysmon"
	"github.com/aupguard/aupguard/internal/testkit/fakedns"
)

// BenchmarkSysmonAwake measures what runtime.sysmon: awake saves and fails
// when the saving is gone: two real `aupguard serve` processes, one with the
// runtime's monitor kept awake (GODEBUG from the environment, as the
// systemd unit starts it) and one with runtime.sysmon: default, each driven
// in turn over the milter protocol by one MTA-like client that pauses
// between the packets of a message as Postfix does (a few hundred
// microseconds), which is where the runtime's monitor, left to its deep
// sleep, is woken again and again. CPU is each process's own (the sum of
// its threads' run time, /proc/PID/task/*/schedstat, nanoseconds), read
// around each batch. Rounds alternate which process goes first; the
// figure is the median per-message CPU of each. The benchmark fails when
// awake costs 0.95 or more of default's CPU per message (docs/performance.md,
// "Runtime setting").
func BenchmarkSysmonAwake(b *testing.B) {
	const (
		rounds   = 5
		messages = 100                  // per batch
		gap      = 1 * time.Millisecond // between two packets of a message
		limit    = 0.95
	)
	bin := buildBinary(b)
	// The DNS the checks ask: a local server with the sender's records.
	dns := fakedns.Start(b, "acme.example. 300 TXT \"v=spf1 -all\"\n_dmarc.acme.example. 300 TXT \"v=DMARC1; p=none\"\n")
	extra := fmt.Sprintf("dns: {servers: [%q], timeout: 1s}\n", dns.Addr())
	awake := startBenchServe(b, bin, extra, "GODEBUG="+sysmon.Setting)
	deflt := startBenchServe(b, bin, extra+"runtime: {sysmon: default}\n", "GODEBUG=")
	for _, p := range []*benchServe{awake, deflt} {
		p.batch(b, 50, gap) // warm up: connections, pools, caches
	}
	var a, d []float64
	for i := 0; i < b.N; i++ {
		a, d = a[:0], d[:0]
		for r := 0; r < rounds; r++ {
			first, second := awake, deflt
			if r%2 == 1 {
				first, second = deflt, awake
			}
			x, y := first.batch(b, messages, gap), second.batch(b, messages, gap)
			if first == deflt {
				x, y = y, x
			}
			a, d = append(a, x), append(d, y)
		}
	}
	ma, md := median(a), median(d)
	b.ReportMetric(ma, "awake-cpu-µs/msg")
	b.ReportMetric(md, "default-cpu-µs/msg")
	b.ReportMetric(ma/md, "awake/default")
	b.Logf("CPU per message: awake %.0f µs %v, default %.0f µs %v", ma, rounded(a), md, rounded(d))
	if ma >= limit*md {
		b.Fatalf("runtime.sysmon awake costs %.0f µs of CPU per message, default %.0f µs: ratio %.2f, want < %.2f (the setting no longer pays; docs/performance.md)", ma, md, ma/md, limit)
	}
}

// benchServe is a running serve of BenchmarkSysmonAwake.
type benchServe struct {
	*served
	addr string
}

func startBenchServe(b *testing.B, bin, extra, env string) *benchServe {
	b.Helper()
	dir := b.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfgPath := filepath.Join(dir, "aupguard.yaml")
	cfg := fmt.Sprintf("milter: {listen: \"inet:%s\"}\nlog: {format: json, level: warn}\nadmin: {listen: \"off\"}\n"+
		"optout: {unsubscribe: {listen: \"off\"}}\nbulk: {fingerprint_recipients: 1000000}\n%s"+
		// Limits far above the batches (the shared harness's).
		"defaults:\n  limits: {messages_per_minute: 100000000, messages_per_hour: 100000000, messages_per_day: 100000000,\n"+
		"    recipients_per_hour: 100000000, recipients_per_day: 100000000, bytes_per_day: 1000GB,\n"+
		"    per_recipient_per_hour: 100000, per_recipient_per_day: 100000, spike_floor: 100000000}\n"+
		"customers:\n  - id: acme\n    networks: [127.0.0.0/16]\n    domains: [acme.example]\n", addr, extra)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		b.Fatal(err)
	}
	return &benchServe{served: startServe(b, bin, cfgPath, addr, env), addr: addr}
}

// batch sends n messages, one connection each, pausing gap between
// packets, and returns the process's CPU per message in microseconds.
func (p *benchServe) batch(b *testing.B, n int, gap time.Duration) float64 {
	b.Helper()
	client := gm.NewClient("tcp", p.addr, gm.WithActions(gm.AllClientSupportedActionMasks))
	before := cpuTime(b, p.cmd.Process.Pid)
	for i := 0; i < n; i++ {
		s, err := client.Session(gm.NewMacroBag())
		if err != nil {
			b.Fatal(err)
		}
		steps := []func() (*gm.Action, error){
			func() (*gm.Action, error) { return s.Conn("mx", gm.FamilyInet, 25, "127.0.0.5") },
			func() (*gm.Action, error) { return s.Helo("client.acme.example") },
			func() (*gm.Action, error) { return s.Mail("news@acme.example", "") },
			func() (*gm.Action, error) { return s.Rcpt(fmt.Sprintf("r%d@example.org", i%50), "") },
			func() (*gm.Action, error) { return s.DataStart() },
			func() (*gm.Action, error) { return s.HeaderField("From", " <news@acme.example>", nil) },
			func() (*gm.Action, error) { return s.HeaderField("To", fmt.Sprintf(" <r%d@example.org>", i%50), nil) },
			func() (*gm.Action, error) { return s.HeaderField("Date", " "+time.Now().Format(time.RFC1123Z), nil) },
			func() (*gm.Action, error) {
				return s.HeaderField("Message-ID", fmt.Sprintf(" <%d.%d@acme.example>", time.Now().UnixNano(), i), nil)
			},
			func() (*gm.Action, error) { return s.HeaderField("Subject", " hello", nil) },
			func() (*gm.Action, error) { return s.HeaderEnd() },
		}
		for _, step := range steps {
			if act, err := step(); err != nil || act.StopProcessing() {
				b.Fatalf("message %d refused: %v %v\n%s", i, act, err, p.stderr.String())
			}
			time.Sleep(gap)
		}
		_, act, err := s.BodyReadFrom(strings.NewReader("hello\r\n"))
		if err != nil || act.Type != gm.ActionAccept {
			b.Fatalf("message %d not accepted: %v %v\n%s", i, act, err, p.stderr.String())
		}
		s.Close()
		time.Sleep(gap)
	}
	return float64(cpuTime(b, p.cmd.Process.Pid)-before) / 1e3 / float64(n)
}

// cpuTime is the CPU time of every thread of process pid so far, in
// nanoseconds (the first field of each /proc/PID/task/TID/schedstat).
func cpuTime(b *testing.B, pid int) int64 {
	b.Helper()
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	if err != nil || len(tasks) == 0 {
		b.Fatalf("no threads of %d: %v", pid, err)
	}
	var sum int64
	for _, f := range tasks {
		s, err := os.ReadFile(f)
		if err != nil {
			continue // a thread that has just ended
		}
		ns, err := strconv.ParseInt(strings.Fields(string(s))[0], 10, 64)
		if err != nil {
			b.Fatalf("%s: %v", f, err)
		}
		sum += ns
	}
	return sum
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[len(s)/2]
}

func rounded(xs []float64) []int {
	out := make([]int, len(xs))
	for i, x := range xs {
		out[i] = int(x + 0.5)
	}
	return out
}
