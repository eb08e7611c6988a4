package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"testing"

	gm "github.com/d--j/go-milter"

	"github.com/aupguard/aupguard/internal/testkit/fakedns"
	"github.com/aupguard/aupguard/internal/testkit/testenv"
)

// freeAddr is a loopback address nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// sendQueued runs one whole transaction with the queue id qid (the {i}
// macro Postfix sends) and returns the SMTP code of the decision (250 for
// accept).
func sendQueued(t *testing.T, addr, qid, rcpt string) int {
	t.Helper()
	macros := gm.NewMacroBag()
	macros.Set(gm.MacroQueueId, qid)
	cs, err := gm.NewClient("tcp", addr, gm.WithActions(gm.AllClientSupportedActionMasks)).Session(macros)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	cs.Conn("c", gm.FamilyInet, 1, "127.0.0.5")
	cs.Helo("c")
	if act, err := cs.Mail("a@acme.example", ""); err != nil {
		t.Fatal(err)
	} else if act.StopProcessing() {
		return int(act.SMTPCode)
	}
	if act, err := cs.Rcpt(rcpt, ""); err != nil {
		t.Fatal(err)
	} else if act.StopProcessing() {
		return int(act.SMTPCode)
	}
	cs.DataStart()
	cs.HeaderField("From", " <a@acme.example>", nil)
	cs.HeaderField("Subject", " hello", nil)
	cs.HeaderEnd()
	_, act, err := cs.BodyReadFrom(strings.NewReader("hello\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if act.Type == gm.ActionAccept {
		return 250
	}
	return int(act.SMTPCode)
}

// scrape reads the admin server's /metrics with the token.
func scrape(t *testing.T, adminAddr, token string) string {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+adminAddr+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics: %d %s", resp.StatusCode, b)
	}
	return string(b)
}

// exposed are the metric family names of a /metrics text with at least one
// sample (a _bucket, _sum or _count sample names its histogram).
func exposed(text string) map[string]bool {
	have := map[string]bool{}
	for _, line := range strings.Split(text, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, _, _ := strings.Cut(line, "{")
		name, _, _ = strings.Cut(name, " ")
		have[name] = true
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			if strings.HasSuffix(name, suf) {
				have[strings.TrimSuffix(name, suf)] = true
			}
		}
	}
	return have
}

// sample returns the value of the sample line that starts with prefix
// ("" when there is none).
func sample(text, prefix string) string {
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, prefix) {
			return strings.TrimSpace(line[len(prefix):])
		}
	}
	return ""
}

// binaryRevision is the VCS revision stamped in the binary (as `go
// version -m` reads it), in aupguard_build_info's form.
func binaryRevision(t *testing.T, bin string) string {
	t.Helper()
	out, err := exec.Command("go", "version", "-m", bin).Output()
	if err != nil {
		t.Fatal(err)
	}
	rev, dirty := "unknown", ""
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) == 2 && f[0] == "build" {
			if v, ok := strings.CutPrefix(f[1], "vcs.revision="); ok {
				rev = v
			}
			if f[1] == "vcs.modified=true" {
				dirty = "-dirty"
			}
		}
	}
	if rev == "unknown" {
		return rev
	}
	return rev + dirty
}

var metricName = regexp.MustCompile(`\baupguard_[a-z_]+`)

// TestMonitoringFilesNameExistingMetrics runs the real binary with the
// Redis store, the delivery-log reader, a listed egress address, a customer
// at its daily quota, refused and accepted reloads (real SIGHUPs) and then
// a Redis outage, and checks that every aupguard metric the alerting rules
// (configs/prometheus/aupguard-alerts.yml) and the Grafana dashboard
// (configs/grafana-dashboard.json) query is in its /metrics output, so
// neither file can rot; and that aupguard_build_info and the reload
// metrics say what happened.
func TestMonitoringFilesNameExistingMetrics(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary with Redis")
	}
	r := testenv.StartRedis(t, testenv.RedisOptions{})
	dns := fakedns.Start(t, "10.2.0.192.zen.example. 1 A 127.0.0.2\n10.2.0.192.broken.example. SERVFAIL\n")
	bin := buildBinary(t)
	dir := t.TempDir()
	milterAddr, adminAddr := freeAddr(t), freeAddr(t)
	const token = "monitoring-test-token-0123456789"
	tokenFile := filepath.Join(dir, "admin.token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	maillog := filepath.Join(dir, "postfix.log")
	if err := os.WriteFile(maillog, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "aupguard.yaml")
	good := fmt.Sprintf(`milter: {listen: "inet:%s"}
log: {format: text, level: debug}
admin: {listen: %q, token_file: %q}
store: {backend: redis, redis: {addrs: [%q]}, timeout: 200ms}
dns: {servers: [%q], max_ttl: 1s, negative_ttl: 1s}
optout: {unsubscribe: {listen: "off"}}
provider: {egress_ips: [192.0.2.10], postmaster: postmaster@provider.example}
reputation:
  deliveries: {source: %q, poll: 50ms}
  bounces: {min_volume: 1}
  dnsbl: {zones: [{zone: zen.example}, {zone: broken.example}], interval: 1s}
chain: [rate_limit, bulk_mail, bounce_rate]
checks: {bulk_mail: {action: accept}}
customers:
  - id: acme
    networks: [127.0.0.0/16]
    domains: [acme.example]
    limits: {messages_per_day: 2}
`, milterAddr, adminAddr, tokenFile, r.Addr(), dns.Addr(), maillog)
	if err := os.WriteFile(cfgPath, []byte(good), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := startServe(t, bin, cfgPath, milterAddr)
	if code := sendQueued(t, milterAddr, "4MON1A", "gone@example.org"); code != 250 {
		t.Fatalf("first message: %d, want 250\n%s", code, srv.stderr.String())
	}
	// Postfix's delivery agent logs the bounce; the reader counts it.
	line := "2026-12-07T23:50:01.123456+00:00 mta1 postfix/smtp[77]: 4MON1A: to=<gone@example.org>, relay=mx.example.org[192.0.2.99]:25, delay=0.4, delays=0.1/0/0.2/0.1, dsn=5.1.1, status=bounced (host said: 550 5.1.1 no such user (in reply to RCPT TO command))\n"
	f, err := os.OpenFile(maillog, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(line)
	f.Close()
	var text string
	waitFor(t, "the bounce to be counted and the listing seen", func() bool {
		text = scrape(t, adminAddr, token)
		return sample(text, `aupguard_delivery_results_total{class="hard"}`) == "1" &&
			sample(text, `aupguard_dnsbl_listed{address="192.0.2.10",zone="zen.example"}`) == "1"
	})
	// The second message: the standing with the bounce, and a quota at 100%.
	if code := sendQueued(t, milterAddr, "4MON2B", "b@example.org"); code != 250 {
		t.Fatalf("second message: %d, want 250\n%s", code, srv.stderr.String())
	}
	if code := sendQueued(t, milterAddr, "4MON3C", "c@example.org"); code/100 != 4 {
		t.Fatalf("third message over the daily quota of 2: %d, want 4xx", code)
	}
	text = scrape(t, adminAddr, token)
	if v := sample(text, `aupguard_customer_quota_used_ratio{customer="acme",limit="messages_per_day"}`); v != "1" {
		t.Errorf("quota ratio %q, want 1", v)
	}
	if v := sample(text, `aupguard_customer_bounce_rate{customer="acme"}`); v != "1" {
		t.Errorf("bounce rate %q, want 1 (one hard bounce of one final result)", v)
	}

	// Build information.
	buildInfo := regexp.MustCompile(`(?m)^aupguard_build_info\{goversion="([^"]+)",revision="([^"]+)",version="([^"]+)"\} 1$`).FindStringSubmatch(text)
	if buildInfo == nil || buildInfo[1] != runtime.Version() || buildInfo[3] != "dev" || buildInfo[2] != binaryRevision(t, bin) {
		t.Errorf("aupguard_build_info %q, want goversion %s, version dev, revision %s:\n%s", buildInfo, runtime.Version(), binaryRevision(t, bin), grepLines(text, "aupguard_build_info"))
	}
	startOK := sample(text, "aupguard_config_last_reload_success_timestamp_seconds")
	if startOK == "" || sample(text, "aupguard_config_last_reload_successful") != "1" ||
		sample(text, `aupguard_config_reload_total{result="success"}`) != "0" || sample(text, `aupguard_config_reload_total{result="failure"}`) != "0" {
		t.Errorf("reload metrics at start:\n%s", grepLines(text, "aupguard_config_"))
	}

	// A refused reload (a config with an error), then a good one.
	hup := func(config, want string) string {
		t.Helper()
		if err := os.WriteFile(cfgPath, []byte(config), 0o600); err != nil {
			t.Fatal(err)
		}
		before := len(srv.stderr.String())
		if err := srv.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		waitFor(t, want, func() bool { return strings.Contains(srv.stderr.String()[before:], want) })
		return scrape(t, adminAddr, token)
	}
	text = hup(good+"nonsense_key: 1\n", "reload refused")
	if sample(text, `aupguard_config_reload_total{result="failure"}`) != "1" || sample(text, "aupguard_config_last_reload_successful") != "0" ||
		sample(text, "aupguard_config_last_reload_success_timestamp_seconds") != startOK {
		t.Errorf("after a refused reload:\n%s", grepLines(text, "aupguard_config_"))
	}
	text = hup(good, "config reloaded")
	if sample(text, `aupguard_config_reload_total{result="success"}`) != "1" || sample(text, "aupguard_config_last_reload_successful") != "1" ||
		sample(text, "aupguard_config_last_reload_success_timestamp_seconds") == startOK {
		t.Errorf("after a good reload:\n%s", grepLines(text, "aupguard_config_"))
	}
	have := exposed(text)

	// The store goes away: errors, check errors, the breaker.
	r.Kill()
	if code := sendQueued(t, milterAddr, "4MON4D", "d@example.org"); code/100 != 4 {
		t.Fatalf("message with the store down: %d, want 4xx", code)
	}
	for n := range exposed(scrape(t, adminAddr, token)) {
		have[n] = true
	}

	for _, file := range []string{"../../configs/prometheus/aupguard-alerts.yml", "../../configs/grafana-dashboard.json"} {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		used := map[string]bool{}
		for _, n := range metricName.FindAllString(string(b), -1) {
			used[n] = true
		}
		if len(used) < 8 {
			t.Fatalf("%s names only %d metrics", file, len(used))
		}
		var missing []string
		for n := range used {
			if !have[n] && !have[strings.TrimSuffix(n, "_bucket")] {
				missing = append(missing, n)
			}
		}
		sort.Strings(missing)
		for _, n := range missing {
			t.Errorf("%s names %s, which the gateway's /metrics does not have", file, n)
		}
	}
}

// grepLines returns the lines of text containing s.
func grepLines(text, s string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestAlertRulesPassPromtool runs Prometheus's own checker on the alerting
// rules (`promtool check rules`: syntax, PromQL, templates) and their unit
// tests (`promtool test rules`: each alert fires on the series it is meant
// for, with its labels and annotations, and stays quiet on the others).
func TestAlertRulesPassPromtool(t *testing.T) {
	testenv.Need(t, "promtool")
	for _, args := range [][]string{
		{"check", "rules", "aupguard-alerts.yml"},
		{"test", "rules", "aupguard-alerts.test.yml"},
	} {
		t.Run(strings.Join(args[:2], "_"), func(t *testing.T) {
			cmd := exec.Command("promtool", args...)
			cmd.Dir = "../../configs/prometheus"
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
			}
			if !strings.Contains(string(out), "SUCCESS") {
				t.Fatalf("promtool %s says no SUCCESS:\n%s", strings.Join(args, " "), out)
			}
		})
	}
}
