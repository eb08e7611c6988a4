package admin

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aupguard/aupguard/internal/checks/optout"
	"github.com/aupguard/aupguard/internal/observability/report"
	"github.com/aupguard/aupguard/internal/secrets"
	"github.com/aupguard/aupguard/internal/store"
	"github.com/aupguard/aupguard/internal/testkit/testenv"
)

// TestOptOutSourcesShown records opt-outs through the real ways in (the
// signed one-click unsubscribe link, the admin API, a CSV import through
// the admin API, an ARF complaint through the admin API) and checks that
// the text report, the HTML dashboard (the console's front page) and the
// customer page in Chromium show the counts by source, read from the store.
func TestOptOutSourcesShown(t *testing.T) {
	testenv.Need(t, "chromium")
	key := secrets.Key("console-sources-test-secret-0123")
	var deps optout.APIDeps
	var st *store.Handle
	e := start(t, trafficConfig, "", func(o *Options) {
		o.Standing = nil // the real standing, from the store
		st = o.Store
		deps = optout.APIDeps{Store: o.Store, Config: o.Config, Secret: key}
		api, err := optout.NewAPI(deps)
		if err != nil {
			t.Fatal(err)
		}
		o.Mounts = map[string]http.Handler{"/api/optouts": api, "/api/optouts/import": api, "/api/complaints": api, "/api/customers/{id}/flag": api}
	})
	unsub, err := optout.NewUnsubscribeHandler(deps)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for _, rcpt := range []string{"jane@example.com", "joe@example.com"} {
		req := httptest.NewRequest("POST", "/u/"+optout.NewToken(key, "acme", rcpt, now), strings.NewReader("List-Unsubscribe=One-Click"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		rec := httptest.NewRecorder()
		unsub.ServeHTTP(rec, req)
		if rec.Code != 200 {
			t.Fatalf("unsubscribe %s: %d %s", rcpt, rec.Code, rec.Body)
		}
	}
	arf, err := os.ReadFile(filepath.Join("..", "..", "checks", "optout", "testdata", "arf", "yahoo_full.eml"))
	if err != nil {
		t.Fatal(err)
	}
	arf = bytes.ReplaceAll(arf, []byte("{{STAMP:acme:jane.doe@yahoo.example}}"), []byte(optout.Stamp(key, "acme", "REF1", "jane.doe@yahoo.example", now)))
	for _, r := range []struct{ path, ctype, body string }{
		{"/api/optouts", "application/json", `{"list":"acme","address":"api1@example.net"}`},
		{"/api/optouts/import?list=acme", "text/csv", "address\na@x.example\nb@x.example\nc@x.example\n"},
		{"/api/optouts", "application/json", `{"list":"beta","address":"api2@example.net"}`},
		{"/api/complaints", "message/rfc822", string(arf)},
	} {
		req, _ := http.NewRequest("POST", e.url+r.path, strings.NewReader(r.body))
		req.Header.Set("Authorization", "Bearer "+testToken)
		req.Header.Set("Content-Type", r.ctype)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode >= 300 {
			t.Fatalf("POST %s: %d %s", r.path, resp.StatusCode, b)
		}
	}

	// Delivered mail counted as the checks count it: 1000 two buckets ago
	// (with no complaint), 500 in the current bucket (with the ARF's one).
	b, err := optout.Open(st)
	if err != nil {
		t.Fatal(err)
	}
	oc, err := optout.ConfigOf(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	w := optout.NewWindow(oc.Complaints.Window)
	size := oc.Complaints.Window / time.Duration(w.Buckets)
	for _, c := range []struct {
		n   int64
		ago time.Duration
	}{{1000, 2 * size}, {500, 0}} {
		if _, err := b.Count(context.Background(), "acme", optout.KindDelivered, c.n, w, now.Add(-c.ago)); err != nil {
			t.Fatal(err)
		}
	}

	// The text report.
	rep, err := report.Build(context.Background(), e.rec, report.Options{Since: now.Add(-6 * time.Hour), Until: now.Add(time.Minute), Config: e.cfg, Top: 10, Now: now,
		Standing: e.srv.o.Standing})
	if err != nil {
		t.Fatal(err)
	}
	var txt bytes.Buffer
	if err := rep.WriteText(&txt); err != nil {
		t.Fatal(err)
	}
	for _, re := range []string{
		`Opt-outs recorded by source`,
		`CUSTOMER\s+UNSUBSCRIBE LINK\s+COMPLAINT\s+API\s+CLI\s+IMPORT\s+TOTAL`,
		`\nacme \(Acme Corp\)\s+2\s+1\s+1\s+0\s+3\s+7\s*\n|\nacme\s+2\s+1\s+1\s+0\s+3\s+7\s*\n`,
	} {
		if !regexp.MustCompile(re).MatchString(txt.String()) {
			t.Errorf("text report does not match %q:\n%s", re, txt.String())
		}
	}

	base := "http://postmaster:" + testToken + "@" + e.srv.Addr().String()
	shots := t.ArtifactDir()
	for _, p := range []struct {
		name, path string
		want       []string
	}{
		{"front", "/?since=6h", []string{
			`<h2>Opt-outs recorded by source</h2>`,
			`<th class="n">unsubscribe link</th><th class="n">complaint</th><th class="n">API</th><th class="n">CLI</th><th class="n">import</th><th class="n">Total</th>`,
			`<tr data-customer="acme"><td>[^<]*acme[^<]*</td><td class="n">2</td><td class="n">1</td><td class="n">1</td><td class="n">0</td><td class="n">3</td><td class="n">7</td></tr>`,
			`<tr data-customer="beta"><td>beta</td><td class="n">0</td><td class="n">0</td><td class="n">1</td><td class="n">0</td><td class="n">0</td><td class="n">1</td></tr>`,
		}},
		{"customer", "/customers/acme", []string{
			`id="optout-sources"><span data-source="unsubscribe">unsubscribe link: 2</span>, <span data-source="complaint">complaint: 1</span>, <span data-source="api">API: 1</span>, <span data-source="cli">CLI: 0</span>, <span data-source="import">import: 3</span> \(total 7\)`,
			`<tr><th>Own suppression list</th><td>7 addresses</td></tr>`,
			`<h2>Complaint rate trend</h2>\s*<svg id="complaint-trend"[^>]* data-points="3">`,
			`<g class="threshold" data-threshold="warn" data-value="0.001">.*?>warn 0.1%</text></g>`,
			`<g class="threshold" data-threshold="act" data-value="0.003">.*?>act 0.3%</text></g>`,
			`<circle class="point" data-start="[^"]+" data-complaints="0" data-delivered="1000"`,
			`<circle class="point" data-start="[^"]+" data-complaints="1" data-delivered="500"[^>]*><title>[^<]*: 1 complaints of 500 delivered \(0.20%\)</title>`,
			`>0.0%</text>.*>0.1%</text>.*>0.2%</text>.*>0.3%</text>.*>0.4%</text>`,
		}},
	} {
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
			chromium(t, "--screenshot="+filepath.Join(shots, "sources-"+p.name+".png"), base+p.path)
		})
	}
}
