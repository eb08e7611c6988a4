package admin

import (
	"bytes"
	"context"
	"fmt"
	"image/png"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/gateway"
	"github.com/aupguard/aupguard/internal/engine/policy"
	"github.com/aupguard/aupguard/internal/observability/events"
	"github.com/aupguard/aupguard/internal/observability/metrics"
	"github.com/aupguard/aupguard/internal/testkit/testenv"
)

const trafficConfig = `
provider: {postmaster: postmaster@provider.example}
resellers:
  - {id: hostco, name: HostCo, abuse_contacts: [abuse@hostco.example]}
customers:
  - id: acme
    name: Acme Corp
    reseller: hostco
    networks: [192.0.2.0/24]
    domains: [acme.example]
    limits: {messages_per_day: 8}
  - id: beta
    networks: [198.51.100.0/24]
    domains: [beta.example]
    mode: monitor
`

// traffic runs real sessions through the gateway engine (the real chain of
// registered checks) with the recorder and the metrics as observers:
// acme sends 12 messages against a daily quota of 8, beta (monitor mode)
// sends 3 with a From it does not own, and a stranger tries 2.
func traffic(t *testing.T, cfgPath string, rec *events.Recorder, m *metrics.Metrics) {
	t.Helper()
	cfg, err := config.Load(cfgPath, gateway.ConfigOptions())
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	deps, err := gateway.OpenDeps(cfg, clock.System{}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { deps.Store.Close() })
	st, err := gateway.Build(deps)
	if err != nil {
		t.Fatal(err)
	}
	eng := gateway.NewEngine(st, clock.System{}, log, rec, m)
	defer eng.Close()
	send := func(client, from, hdrFrom string) policy.Action {
		ctx := context.Background()
		s := eng.NewSession()
		defer s.Close()
		m.SessionOpened()
		defer m.SessionClosed()
		s.Connect("client.example", netip.MustParseAddr(client))
		s.Helo("client.example")
		if o := s.Mail(ctx, from, "", ""); o.Action != policy.Accept {
			return o.Action
		}
		s.Rcpt(ctx, "someone@receiver.example", "")
		s.Rcpt(ctx, "other@receiver.example", "")
		for _, h := range [][2]string{{"From", " " + hdrFrom}, {"To", " someone@receiver.example"}, {"Subject", " hello"},
			{"Date", " " + time.Now().Format(time.RFC1123Z)}, {"Message-ID", fmt.Sprintf(" <%d@x>", time.Now().UnixNano())}} {
			s.Header(h[0], h[1])
		}
		s.EndOfHeaders()
		s.Body([]byte("Hello.\r\n"))
		return s.EndOfMessage(ctx, "Q"+strconv.FormatInt(time.Now().UnixNano()%1e9, 10)).Action
	}
	var acme []policy.Action
	for i := 0; i < 12; i++ {
		acme = append(acme, send("192.0.2.10", "news@acme.example", "news@acme.example"))
	}
	for i := 0; i < 3; i++ {
		send("198.51.100.7", "info@beta.example", "ceo@bank.example")
	}
	for i := 0; i < 2; i++ {
		send("203.0.113.9", "x@stranger.example", "x@stranger.example")
	}
	var accepted int
	for _, a := range acme {
		if a == policy.Accept {
			accepted++
		}
	}
	if accepted != 8 {
		t.Fatalf("acme: %d accepted (%v), want 8 within the quota", accepted, acme)
	}
}

func chromium(t *testing.T, args ...string) []byte {
	t.Helper()
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal(err)
	}
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--user-data-dir=" + t.TempDir(), "--window-size=1200,2400", "--hide-scrollbars"}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append(base, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, stderr.String())
	}
	return stdout.Bytes()
}

// TestDashboardInBrowser loads the dashboard in headless Chromium after
// real traffic, and checks what the browser rendered: the DOM has the
// charts with their data and the figures, and the screenshot is a real
// picture.
func TestDashboardInBrowser(t *testing.T) {
	testenv.Need(t, "chromium")
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "aupguard.yaml")
	if err := os.WriteFile(cfgPath, []byte(trafficConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	e := start(t, trafficConfig, "", func(o *Options) {
		m := metrics.New(metrics.Options{TopCustomers: 5})
		o.Gatherer = m.Registry()
		rec := o.Events.(*events.Recorder)
		traffic(t, cfgPath, rec, m)
	})
	url := "http://postmaster:" + testToken + "@" + e.srv.Addr().String() + "/?since=6h"

	dom := string(chromium(t, "--dump-dom", url))
	// start() recorded three decisions of its own (acme 2, beta 1) before
	// the traffic: acme 2+12, beta 1+3, the stranger 2.
	checks := []struct {
		name string
		re   string
	}{
		{"volume chart", `<svg id="volume-chart"[^>]*data-points="[67]"[^>]*data-series="3"`},
		{"acme line", `<polyline class="series" data-customer="acme" data-total="14"[^>]*points="[0-9., ]+"`},
		{"beta line", `<polyline class="series" data-customer="beta" data-total="4"`},
		{"stranger line", `<polyline class="series" data-customer="-" data-total="2"`},
		{"quota marked", `<g class="mark limit" data-customer="acme" data-kind="quota_exceeded"[^>]*data-count="4"`},
		{"spike marked", `<g class="mark spike" data-customer="acme" data-kind="volume_spike"`},
		{"checks chart", `<svg id="checks-chart"[^>]*data-bars="[3-9]"`},
		{"rate_limit bar", `<rect class="bar" data-check="rate_limit" data-action="defer" data-count="5"`},
		{"identity bar", `<rect class="bar" data-check="identity" data-action="reject" data-count="2"`},
		{"messages figure", `id="fig-messages"><span class="n">20</span>`},
		{"deferred figure", `id="fig-deferred"><span class="n">5</span>`},
		{"rejected figure", `id="fig-rejected"><span class="n">2</span>`},
		{"monitor figure", `id="fig-monitor"><span class="n">4</span>`},
		{"customer row", `<tr data-customer="acme"><td><a href="/customers/acme">acme</a> <span class="muted">Acme Corp</span></td><td>enforce</td><td class="n">14</td>`},
		{"current range", `class="current">last 6h`},
	}
	for _, c := range checks {
		if !regexp.MustCompile(c.re).MatchString(dom) {
			t.Errorf("%s: DOM does not match %s", c.name, c.re)
		}
	}
	if t.Failed() {
		t.Logf("DOM:\n%s", dom)
	}

	shot := filepath.Join(dir, "dashboard.png")
	chromium(t, "--screenshot="+shot, url)
	f, err := os.Open(shot)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("screenshot is no PNG: %v", err)
	}
	b := img.Bounds()
	if b.Dx() < 1000 || b.Dy() < 1000 {
		t.Fatalf("screenshot %v", b)
	}
	// A rendered page has many colours (lines, bars, text); an error page
	// or a blank one has a handful.
	colours := map[uint32]bool{}
	for y := b.Min.Y; y < b.Max.Y; y += 3 {
		for x := b.Min.X; x < b.Max.X; x += 3 {
			r, g, bl, _ := img.At(x, y).RGBA()
			colours[(r>>8)<<16|(g>>8)<<8|bl>>8] = true
		}
	}
	if len(colours) < 50 {
		t.Fatalf("screenshot has %d colours: blank or error page", len(colours))
	}
	if fi, _ := os.Stat(shot); fi.Size() < 20_000 {
		t.Fatalf("screenshot only %d bytes", fi.Size())
	}
	if out := os.Getenv("AUPGUARD_DASHBOARD_PNG"); out != "" {
		data, _ := os.ReadFile(shot)
		os.WriteFile(out, data, 0o644)
	}
	if strings.Contains(e.log.String(), testToken) {
		t.Fatal("token in the log")
	}
}
