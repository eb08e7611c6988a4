package admin

import (
	"context"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aupguard/aupguard/internal/checks/optout"
	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/customer"
	"github.com/aupguard/aupguard/internal/observability/events"
	"github.com/aupguard/aupguard/internal/observability/metrics"
	"github.com/aupguard/aupguard/internal/store"
	"github.com/aupguard/aupguard/internal/testkit/testenv"
	"github.com/aupguard/aupguard/ratelimit"
)

// TestConsoleInBrowser renders the console's pages in headless Chromium
// after real traffic and checks what the browser shows; the screenshots
// are kept as test artifacts (go test -artifacts).
func TestConsoleInBrowser(t *testing.T) {
	testenv.Need(t, "chromium")
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "aupguard.yaml")
	if err := os.WriteFile(cfgPath, []byte(trafficConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	free := time.Now().Add(17 * time.Minute).UTC()
	used, rem := int64(8), int64(0)
	e := start(t, trafficConfig, "", func(o *Options) {
		m := metrics.New(metrics.Options{TopCustomers: 5})
		o.Gatherer = m.Registry()
		traffic(t, cfgPath, o.Events.(*events.Recorder), m)
		h, err := store.Open(config.StoreConfig{Backend: "memory"}, clock.System{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Close() })
		s, _ := customer.OpenStore(h)
		dir := customer.NewManager(s, o.Config, config.Options{}, nil)
		if _, err := dir.Set(context.Background(), "acme", map[string]any{"limits": map[string]any{"messages_per_day": 9}, "abuse_contact": "abuse@acme.example"}, customer.ViaCLI); err != nil {
			t.Fatal(err)
		}
		o.Directory = dir
		o.Quota = func(_ context.Context, id string) (any, error) {
			q := ratelimit.QuotaReport{Customer: id, Limits: []ratelimit.LimitUsage{
				{Name: "messages_per_day", Kind: "quota", Unit: "messages", Limit: 8, Period: "24h", Used: &used, Remaining: &rem, NextFreeAt: &free},
			}}
			if id == "acme" {
				q.Reseller = "hostco"
				q.ResellerLimits = []ratelimit.LimitUsage{{Name: "messages_per_day", Kind: "quota", Unit: "messages", Limit: 500, Period: "24h", Used: &used, Remaining: &rem}}
			}
			return q, nil
		}
		o.Standing = func(_ context.Context, id string) (*optout.CustomerStatus, error) {
			st := &optout.CustomerStatus{Customer: id, RateLevel: "ok", FlagThreshold: 3, Delivered: 1000}
			if id == "acme" {
				st.Flag = &optout.Flag{Reason: "opted_out_sends", Since: time.Now().Add(-time.Hour), Hits: 3}
				st.Complaints, st.ComplaintRate, st.RateLevel = 4, 0.004, "act"
			}
			return st, nil
		}
	})
	base := "http://postmaster:" + testToken + "@" + e.srv.Addr().String()
	shots := t.ArtifactDir()
	pages := []struct {
		name, path string
		want       []string // regexps on the DOM
	}{
		{"front", "/?since=6h", []string{
			`<section class="attention" id="attention">`,
			`<tr data-customer="acme"><td><a href="/customers/acme">acme</a></td><td><span class="bad">flagged</span> opted_out_sends`,
			`<a href="/decision"|action="/decision"`,
		}},
		{"decision", "/decision?ref=deferred01", []string{
			`<section class="event" data-ref="DEFERRED01" data-stage="mail">`,
			`id="customer"><a href="/customers/acme">acme</a>`,
			`id="decision">defer`,
			`id="finding">rate_limit volume_spike`,
			`id="reply">451 4.7.1`,
		}},
		{"decision-missing", "/decision?ref=NOSUCHREF2", []string{`id="not-found">No decision with reference NOSUCHREF2`}},
		{"decisions", "/decisions?since=6h&action=defer&customer=acme", []string{
			`id="count">1–[0-9]+ of [0-9]+ decisions`,
			`<tr data-ref="DEFERRED01"><td>[^<]+</td><td><a href="/decision\?ref=DEFERRED01">DEFERRED01</a></td><td><a href="/customers/acme">acme</a></td><td class="login">-</td><td>mail</td><td>defer</td><td>rate_limit</td><td>volume_spike</td><td>451 4.7.1</td>`,
			`<option selected="">defer</option>|<option selected>defer</option>`,
		}},
		{"customer", "/customers/acme", []string{
			`<h1>acme <span class="muted">Acme Corp</span></h1>`,
			`id="flag"><span class="bad">flagged</span>: opted_out_sends`,
			`<button id="clear-flag">Clear the flag</button>`,
			`id="complaint-rate">0.400%: 4 of 1000 delivered, <span class="bad">act</span> \(warn at 0.[0-9]+%, act at 0.[0-9]+%\)`,
			`<tr data-limit="messages_per_day"><td>messages_per_day</td><td>quota / 24h</td><td class="n">8 messages</td><td class="n">8</td><td class="n">0</td><td>` + regexp.QuoteMeta(free.Format("2006-01-02 15:04:05")),
			`<svg id="volume-chart"`,
			`<svg id="checks-chart"`,
			`<td><a href="/decisions\?customer=acme&amp;check=rate_limit&amp;since=7d">rate_limit</a></td>`,
			`From the store \(replaces the config file's definition\)`,
			`messages_per_day: 9`,
			`<table id="changes">.*<td>set</td><td>cli</td><td>abuse_contact, limits</td>`,
		}},
		{"resellers", "/resellers", []string{`<tr data-reseller="hostco"><td><a href="/resellers/hostco">hostco</a></td><td>HostCo</td><td class="n">1</td><td>abuse@hostco.example</td>`}},
		{"reseller", "/resellers/hostco", []string{
			`<h1>Reseller hostco <span class="muted">HostCo</span></h1>`,
			`id="contacts">Abuse contacts: abuse@hostco.example`,
			`<tr data-limit="messages_per_day"><td>messages_per_day</td><td>quota / 24h</td><td class="n">500 messages</td><td class="n">8</td>`,
			`id="customer-count">1 customers`,
			`<tr data-customer="acme"><td><a href="/customers/acme">acme</a></td><td>Acme Corp</td><td>enforce</td><td><span class="bad">flagged</span> opted_out_sends</td><td class="n">0.400%</td><td class="n">1[0-9]</td>`,
		}},
		{"customers", "/customers", []string{`<tr data-customer="beta"><td><a href="/customers/beta">beta</a></td><td></td><td>monitor</td><td>config</td>`}},
	}
	for _, p := range pages {
		t.Run(p.name, func(t *testing.T) {
			dom := string(chromium(t, "--dump-dom", base+p.path))
			for _, re := range p.want {
				if !regexp.MustCompile("(?s)" + re).MatchString(dom) {
					t.Errorf("DOM does not match %s", re)
				}
			}
			if t.Failed() {
				t.Logf("DOM:\n%s", dom)
			}
			shot := filepath.Join(shots, "console-"+p.name+".png")
			chromium(t, "--screenshot="+shot, base+p.path)
			if fi, err := os.Stat(shot); err != nil || fi.Size() < 10_000 {
				t.Fatalf("screenshot %s: %v", shot, err)
			}
		})
	}
	if code, _, _ := e.do(t, "GET", "/customers/nosuch", "Bearer "+testToken); code != http.StatusNotFound {
		t.Errorf("unknown customer page: %d", code)
	}
	if code, body, _ := e.do(t, "GET", "/resellers/nosuch", "Bearer "+testToken); code != http.StatusNotFound || !strings.Contains(body, "No reseller nosuch") {
		t.Errorf("unknown reseller page: %d", code)
	}
	if code, _, _ := e.do(t, "GET", "/resellers/hostco", ""); code != http.StatusUnauthorized {
		t.Errorf("reseller page without a token: %d", code)
	}

	// Clearing the flag: a form post with the page's anti-CSRF token; a
	// cross-site post, a forged token or another form's token is refused
	// (the guard; TestGuard* and TestCrossSiteInBrowser try the rest).
	post := func(form url.Values, site string) int {
		req, _ := http.NewRequest("POST", e.url+"/customers/acme/clear-flag", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Authorization", "Bearer "+testToken)
		if site != "" {
			req.Header.Set("Sec-Fetch-Site", site)
		}
		c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	token := func(path string) string {
		req, _ := http.NewRequest("GET", "/", nil)
		req.Header.Set("Authorization", "Bearer "+testToken)
		return e.srv.formToken(req, path)
	}
	good := url.Values{"csrf": {token("/customers/acme/clear-flag")}}
	if code := post(url.Values{"csrf": {"00"}}, "same-origin"); code != http.StatusForbidden {
		t.Errorf("forged form: %d", code)
	}
	if code := post(good, "cross-site"); code != http.StatusForbidden {
		t.Errorf("cross-site post: %d", code)
	}
	if code := post(good, ""); code != http.StatusForbidden {
		t.Errorf("post without Fetch metadata or Origin: %d", code)
	}
	if code := post(url.Values{"csrf": {token("/customers/beta/clear-flag")}}, "same-origin"); code != http.StatusForbidden {
		t.Errorf("another customer's form: %d", code)
	}
	if code := post(good, "same-origin"); code != http.StatusSeeOther {
		t.Errorf("clear: %d", code)
	}
	if !strings.Contains(e.log.String(), `"event":"flag_cleared"`) {
		t.Errorf("no flag_cleared log line")
	}
}
