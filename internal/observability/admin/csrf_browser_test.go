package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/customer"
	"github.com/aupguard/aupguard/internal/testkit/testenv"
)

// csrfTarget is a state-changing route as a hostile page aims at it: the
// JSON body (split in name and value for a text/plain form, whose body is
// name=value) and the fields of an urlencoded or multipart form.
type csrfTarget struct {
	Method, Path, JSON, PlainName, PlainValue string
	Fields                                    [][2]string
}

var csrfTargets = []csrfTarget{
	{"POST", "/api/customers", `{"id":"evil","networks":["198.18.0.0/24","2001:db8:e::/48"],"domains":["evil.example"],"name":"x"}`,
		`{"id":"evil","networks":["198.18.0.0/24","2001:db8:e::/48"],"domains":["evil.example"],"name":"`, `x"}`,
		[][2]string{{"id", "evil"}, {"networks", "198.18.0.0/24"}, {"domains", "evil.example"}}},
	{"PUT", "/api/customers/storeco", `{"networks":["0.0.0.0/0"],"domains":["storeco.example"]}`, "", "", nil},
	{"PATCH", "/api/customers/storeco", `{"networks":["0.0.0.0/0"]}`, "", "", nil},
	{"DELETE", "/api/customers/storeco", ``, "", "", nil},
	{"POST", "/api/customers/import", `{"customers":[{"id":"evil2","networks":["10.9.9.0/24"],"domains":["evil2.example"],"name":"x"}]}`,
		`{"customers":[{"id":"evil2","networks":["10.9.9.0/24"],"domains":["evil2.example"],"name":"`, `x"}]}`,
		[][2]string{{"customers", "evil2"}}},
	{"POST", "/api/optouts", `{"list":"acme","address":"victim@example.net","note":"x"}`,
		`{"list":"acme","address":"victim@example.net","note":"`, `x"}`, [][2]string{{"list", "acme"}, {"address", "victim@example.net"}}},
	{"DELETE", "/api/optouts?list=acme&address=kept@example.net", ``, "", "", nil},
	{"POST", "/api/optouts/import?list=acme", "address\nvictim2@example.net\n", "address\nvictim2@example.net\nx", "y", [][2]string{{"address", "victim3@example.net"}}},
	{"POST", "/api/complaints", "From: x@isp.example\r\n\r\nreport\r\n", "From: x@isp.example\r\n\r\nreport", "x", [][2]string{{"report", "x"}}},
	{"DELETE", "/api/customers/acme/flag", ``, "", "", nil},
	{"POST", "/customers/acme/clear-flag", "csrf=forged", "csrf", "forged", [][2]string{{"csrf", "forged"}}},
}

// attackPage is a page of another origin that, when run() is called,
// aims every target in every way a page can: auto-submitted forms
// (text/plain with a JSON body, urlencoded, multipart) into frames, fetch
// in no-cors mode with the browser's credentials, and fetch in cors mode
// with credentials and a JSON type (which needs a preflight). It returns
// what the page could observe of each.
const attackPage = `<!DOCTYPE html><html><head><meta charset="utf-8"><title>win a prize</title></head><body><h1>Congratulations</h1><script>
const T = %s, targets = %s;
function frameForm(t, enctype, fields) {
  return new Promise(res => {
    const name = 'f' + Math.random().toString(36).slice(2);
    const fr = document.createElement('iframe');
    fr.name = name;
    document.body.appendChild(fr);
    // The frame's load once it left about:blank (its address is then
    // another origin's, which this page may not read).
    fr.onload = () => {
      try { if (fr.contentWindow.location.href === 'about:blank') return; } catch (e) {}
      res('frame loaded');
    };
    const f = document.createElement('form');
    f.method = 'POST'; f.action = T + t.Path; f.enctype = enctype; f.target = name;
    for (const [k, v] of fields) {
      const i = document.createElement('input');
      i.type = 'hidden'; i.name = k; i.value = v;
      f.appendChild(i);
    }
    document.body.appendChild(f);
    f.submit();
  });
}
async function tryFetch(t, mode, ctype) {
  try {
    const init = {method: t.Method, mode: mode, credentials: 'include', headers: {'Content-Type': ctype}};
    if (t.JSON) init.body = t.JSON;
    const r = await fetch(T + t.Path, init);
    return 'status ' + r.status + ' (' + r.type + ')';
  } catch (e) {
    return 'blocked: ' + e.name;
  }
}
window.run = async () => {
  const out = [];
  for (const t of targets) {
    const k = t.Method + ' ' + t.Path;
    if (t.Method === 'POST') {
      out.push([k + ' text/plain form', await frameForm(t, 'text/plain', [[t.PlainName, t.PlainValue]])]);
      out.push([k + ' urlencoded form', await frameForm(t, 'application/x-www-form-urlencoded', t.Fields)]);
      out.push([k + ' multipart form', await frameForm(t, 'multipart/form-data', t.Fields)]);
    }
    out.push([k + ' no-cors fetch', await tryFetch(t, 'no-cors', 'text/plain')]);
    out.push([k + ' cors fetch', await tryFetch(t, 'cors', 'application/json')]);
  }
  return out;
};
</script></body></html>`

// topFormPage is the reproduction: a page of another origin with a
// form that posts a JSON body as text/plain to POST /api/customers, the
// browser's whole window following it.
const topFormPage = `<!DOCTYPE html><html><body><form method="post" enctype="text/plain" action="%s/api/customers">` +
	`<input type="hidden" name='{"id":"evil3","networks":["100.64.0.0/24"],"domains":["evil3.example"],"name":"' value='x"}'></form></body></html>`

// accessLine is one line of the admin access log.
type accessLine struct {
	Msg, Method, Path string
	Status            int
}

func accessLog(s string) []accessLine {
	var out []accessLine
	for _, l := range strings.Split(s, "\n") {
		var a accessLine
		if json.Unmarshal([]byte(l), &a) == nil && a.Msg == "admin request" {
			out = append(out, a)
		}
	}
	return out
}

// TestCrossSiteInBrowser opens the console in headless Chromium with Basic
// authentication, then lets a page of another origin (another loopback
// port, the same site; and localhost, another site) aim every
// state-changing route in every way a page can: 0
// succeed, the store is byte for byte unchanged, and the server saw the
// browser's credentials on them (refused 403/415, not 401). The same page
// against the same server without the guard (the control) does create a
// customer, add an opt-out and clear the flag, so the attacks are real.
// (The created customer's networks are ones the directory accepts: it
// refuses 0.0.0.0/0 and ::/0 from anyone, unless forced.) Then the console's own clear-flag form, clicked in the
// browser, works, as does a same-origin JSON write.
func TestCrossSiteInBrowser(t *testing.T) {
	testenv.Need(t, "chromium")
	f := newGuardedFixture(t, nil)
	ctl := newGuardedFixture(t, nil)
	for _, fx := range []*guardedFixture{f, ctl} {
		c := config.Customer{ID: "storeco", Networks: []string{"203.0.113.0/24"}, Domains: []string{"storeco.example"}}
		if _, err := fx.e.srv.o.Directory.Add(context.Background(), c, customer.ViaCLI); err != nil {
			t.Fatal(err)
		}
		fx.reached.Store(0)
	}
	// The control: the same server's routes behind authentication only,
	// as the admin server was before the guard.
	ctlMux := ctl.e.srv.routes()
	ctlSrv := httptest.NewServer(ctl.e.srv.authenticated(func(w http.ResponseWriter, r *http.Request, _ string) { ctlMux.ServeHTTP(w, r) }))
	t.Cleanup(ctlSrv.Close)

	targets, _ := json.Marshal(csrfTargets)
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		target := r.URL.Query().Get("target")
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		if r.URL.Path == "/top" {
			fmt.Fprintf(w, topFormPage, target)
			return
		}
		q, _ := json.Marshal(target)
		fmt.Fprintf(w, attackPage, q, targets)
	}))
	t.Cleanup(evil.Close)

	b := testenv.StartBrowser(t)
	login := func(base string) *testenv.Page {
		u, _ := url.Parse(base)
		p := b.NewPage()
		p.Navigate("http://postmaster:" + testToken + "@" + u.Host + "/customers/acme")
		if txt := p.Text(); !strings.Contains(txt, "flagged") || !strings.Contains(txt, "Clear the flag") {
			t.Fatalf("console of %s not shown:\n%.500s", base, txt)
		}
		return p
	}
	console := login(f.e.url)
	login(ctlSrv.URL)

	// The hostile page is served from another port of the same address
	// (the same site: Sec-Fetch-Site same-site) and as localhost (another
	// site: cross-site).
	evilOther := strings.Replace(evil.URL, "127.0.0.1", "localhost", 1)
	run := func(evilBase, target string) [][2]string {
		p := b.NewPage()
		p.Navigate(evilBase + "/?target=" + url.QueryEscape(target))
		var out [][2]string
		p.Eval("window.run()", &out)
		top := b.NewPage()
		top.Navigate(evilBase + "/top?target=" + url.QueryEscape(target))
		top.AndWaitLoad(func() { top.Eval("document.forms[0].submit()", nil) })
		return append(out, [2]string{"POST /api/customers top-level text/plain form", top.Text()})
	}

	// Against the guarded server, from both hostile origins.
	forms := 0
	for _, tg := range csrfTargets {
		if tg.Method == "POST" {
			forms += 3
		}
	}
	before := f.digest(t)
	refusedBefore := f.refusedCount(t)
	for _, pass := range []struct {
		name, evil string
		// minRefused is how many requests at least must reach the guard
		// with the browser's credentials: from the same site every form
		// and the top-level one; from another site Chromium sends its
		// cached Basic credentials only on the top-level navigation
		// (frames and fetch of another site get the 401).
		minRefused int
	}{{"same-site (another port)", evil.URL, forms + 1}, {"cross-site (localhost)", evilOther, 1}} {
		logFrom := len(accessLog(f.e.log.String()))
		seen := run(pass.evil, f.e.url)
		var reqs []accessLine
		for _, a := range accessLog(f.e.log.String())[logFrom:] {
			if a.Method != "GET" { // not the browser's own /favicon.ico
				reqs = append(reqs, a)
			}
		}
		succeeded, refused, unauth := 0, 0, 0
		for _, a := range reqs {
			switch {
			case a.Status < 300:
				succeeded++
				t.Errorf("%s: %s %s succeeded: %d", pass.name, a.Method, a.Path, a.Status)
			case a.Status == http.StatusForbidden || a.Status == http.StatusUnsupportedMediaType:
				refused++
			case a.Status == http.StatusUnauthorized:
				// The browser's first request to a path outside the space
				// it authenticated, before it resends it with its Basic
				// credentials; a CORS preflight, sent without credentials,
				// where the browser stops; a request from another site,
				// for which the browser does not use its cached login.
				unauth++
			default:
				t.Errorf("%s: %s %s: %d", pass.name, a.Method, a.Path, a.Status)
			}
		}
		for _, s := range seen {
			if strings.Contains(s[1], "status 2") {
				t.Errorf("%s: %s: the page saw %s", pass.name, s[0], s[1])
			}
		}
		if top := seen[len(seen)-1][1]; !strings.Contains(top, "cross-site request refused") {
			t.Errorf("%s: top-level form: the window shows %q, want the refusal", pass.name, top)
		}
		if refused < pass.minRefused {
			t.Errorf("%s: %d requests refused by the guard, want at least %d: the browser did not send them with its credentials?", pass.name, refused, pass.minRefused)
		}
		t.Logf("guarded, page %s: %d attempts, %d requests reached the server: %d refused by the guard (403/415, with the browser's credentials), %d challenged (401), %d succeeded",
			pass.name, len(seen), len(reqs), refused, unauth, succeeded)
		if t.Failed() {
			for _, s := range seen {
				t.Logf("  %s: %s", s[0], s[1])
			}
		}
	}
	if after := f.digest(t); after != before {
		t.Errorf("state changed by the hostile pages: %s → %s", before, after)
	}
	if f.reached.Load() != 0 {
		t.Errorf("%d hostile requests reached a handler", f.reached.Load())
	}
	if _, ok := f.e.srv.o.Directory.Get("evil"); ok {
		t.Error("customer evil created")
	}
	refusedAfter := f.refusedCount(t)
	t.Logf("guarded: store unchanged (%s); aupguard_admin_requests_refused_total +%v", before,
		refusedAfter[refusedCrossSite]+refusedAfter[refusedMediaType]+refusedAfter[refusedCSRF]-refusedBefore[refusedCrossSite]-refusedBefore[refusedMediaType]-refusedBefore[refusedCSRF])

	// The control: the same page does act without the guard.
	ctlFrom := len(accessLog(ctl.e.log.String()))
	run(evil.URL, ctlSrv.URL)
	var ctlOK []string
	for _, a := range accessLog(ctl.e.log.String())[ctlFrom:] {
		if a.Status < 400 && a.Method != "GET" {
			ctlOK = append(ctlOK, fmt.Sprintf("%s %s %d", a.Method, a.Path, a.Status))
		}
	}
	t.Logf("control (no guard): %d hostile requests succeeded: %v", len(ctlOK), ctlOK)
	if _, ok := ctl.e.srv.o.Directory.Get("evil"); !ok {
		t.Error("control: the text/plain form did not create customer evil: the attack page does not work")
	}
	if _, ok := ctl.e.srv.o.Directory.Get("evil3"); !ok {
		t.Error("control: the top-level form did not create customer evil3")
	}
	if st, err := ctl.svc.Status(context.Background(), "acme"); err != nil || st.Flag != nil {
		t.Errorf("control: the flag was not cleared: %v", err)
	}

	// The console's own form, clicked in the browser.
	st, err := f.svc.Status(context.Background(), "acme")
	if err != nil || st.Flag == nil {
		t.Fatalf("guarded: acme's flag is gone before the click: %v", err)
	}
	console.Navigate(f.e.url + "/customers/acme")
	console.AndWaitLoad(func() { console.Eval(`document.getElementById("clear-flag").click()`, nil) })
	if u := console.URL(); !strings.HasSuffix(u, "/customers/acme?cleared=1") {
		t.Errorf("after the click the console is at %s", u)
	}
	if txt := console.Text(); !strings.Contains(txt, "not flagged") {
		t.Errorf("after the click the page shows:\n%.600s", txt)
	}
	if st, err := f.svc.Status(context.Background(), "acme"); err != nil || st.Flag != nil {
		t.Errorf("the console's form did not clear the flag: %v %+v", err, st.Flag)
	}
	// A same-origin JSON write with the browser's credentials: script of
	// the admin origin (which the server's Content-Security-Policy bans
	// from every page it serves: the test lifts the ban in this tab).
	console.Call("Page.setBypassCSP", map[string]any{"enabled": true}, nil)
	console.Navigate(f.e.url + "/healthz")
	var code int
	console.Eval(`fetch("/api/optouts", {method: "POST", headers: {"Content-Type": "application/json"},
		body: JSON.stringify({list: "acme", address: "browser@example.net"})}).then(r => r.status)`, &code)
	if code != http.StatusCreated {
		t.Errorf("same-origin JSON write: %d, want 201", code)
	}
	if _, ok, err := f.svc.Check(context.Background(), "acme", "browser@example.net"); err != nil || !ok {
		t.Errorf("same-origin write not recorded: %v", err)
	}
}
