package admin

import (
	"bytes"
	"encoding/json"
	"html/template"
	"net/http"
	"net/http/httptest"
	"net/url"
	"time"
)

// The console's page of stopped senders, over the mounted /api/standing
// (the standing family's API: manual stops and the automatic flags, with
// why). Like clearFlag, it calls the mounted handler in process; the
// guard has checked each form's origin and anti-CSRF token.
//
//	GET  /standing          every stop and flag, a resume (or clear) button per row, a suspend form
//	POST /standing/suspend  scope, id, action, reason, until → POST /api/standing
//	POST /standing/resume   scope, id, source → DELETE /api/standing/{scope}/{id}
const (
	standingAPI         = "/api/standing"
	standingSuspendPath = "/standing/suspend"
	standingResumePath  = "/standing/resume"
)

// standingRow is one listed stop (the API's JSON, read without importing
// the family).
type standingRow struct {
	Scope     string    `json:"scope"`
	ID        string    `json:"id"`
	Action    string    `json:"action"`
	Reason    string    `json:"reason"`
	Until     time.Time `json:"until"`
	Source    string    `json:"source"`
	Who       string    `json:"who"`
	When      time.Time `json:"when"`
	Samples   []string  `json:"samples"`
	Active    bool      `json:"active"`
	Clearable bool      `json:"clearable"`
}

var _ = template.Must(console.New("standing").Parse(`{{template "head" "Stopped senders"}}{{template "nav" .}}
<h1>Stopped senders</h1>
{{- range .Errors}}<p class="warn">{{.}}</p>{{end}}
{{- if .Done}}<p class="ok" id="done">{{.Done}}</p>{{end}}
{{- if .Rows}}
<table id="stops"><thead><tr><th>Scope</th><th>Id</th><th>Action</th><th>Source</th><th>Since</th><th>Until</th><th>By</th><th>Why</th><th>Samples</th><th></th></tr></thead><tbody>
{{- range .Rows}}<tr data-scope="{{.Scope}}" data-id="{{.ID}}" data-source="{{.Source}}">
<td>{{.Scope}}</td><td>{{if eq .Scope "customer"}}<a href="/customers/{{.ID}}">{{.ID}}</a>{{else}}{{.ID}}{{end}}</td>
<td>{{if .Action}}{{.Action}}{{else}}flag{{end}}{{if not .Active}} <span class="muted">(ended)</span>{{end}}</td>
<td>{{.Source}}</td><td>{{when .When}}</td><td>{{if .Until.IsZero}}-{{else}}{{when .Until}}{{end}}</td><td>{{.Who}}</td><td>{{.Reason}}</td>
<td>{{range .Samples}}<a href="/decision?ref={{.}}">{{.}}</a> {{end}}</td>
<td>{{if .Clearable}}<form method="post" action="/standing/resume"><input type="hidden" name="csrf" value="{{$.ResumeCSRF}}"><input type="hidden" name="scope" value="{{.Scope}}"><input type="hidden" name="id" value="{{.ID}}"><input type="hidden" name="source" value="{{.Source}}"><button>{{if eq .Source "manual"}}Resume{{else}}Clear{{end}}</button></form>{{else}}<span class="muted">follows its rate</span>{{end}}</td></tr>
{{- end}}
</tbody></table>
{{- else}}<p class="ok" id="none">No sender is stopped.</p>{{end}}
<h2>Stop a sender</h2>
<form method="post" action="/standing/suspend" id="suspend"><input type="hidden" name="csrf" value="{{.SuspendCSRF}}">
<select name="scope"><option>customer</option><option>login</option><option>reseller</option></select>
<input name="id" placeholder="id" required maxlength="256">
<select name="action"><option>hold</option><option>defer</option><option>reject</option></select>
<input name="reason" placeholder="reason (shown to the customer)" required maxlength="200" size="40">
<input name="until" placeholder="until: 2h or RFC 3339 (optional)" size="24">
<button>Stop</button></form>
<p class="muted">Held mail waits in Postfix's hold queue: release one message with <code>postsuper -H QUEUEID</code>, delete it with <code>postsuper -d QUEUEID hold</code> (docs/admin.md).</p>
</body></html>`))

// standingHandler returns the mounted standing API, if any (the pages
// are registered only when it is).
func (s *Server) standingHandler() (http.Handler, bool) {
	if h, ok := s.o.Mounts[standingAPI]; ok {
		return h, true
	}
	for _, rt := range s.o.Routes {
		if rt.Pattern == standingAPI {
			return rt.Handler, true
		}
	}
	return nil, false
}

// callStanding runs one request on the mounted standing API.
func (s *Server) callStanding(r *http.Request, method, target string, body []byte) *httptest.ResponseRecorder {
	h, _ := s.standingHandler()
	var req *http.Request
	if body != nil {
		req = httptest.NewRequestWithContext(r.Context(), method, target, bytes.NewReader(body))
	} else {
		req = httptest.NewRequestWithContext(r.Context(), method, target, nil)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Aupguard-Via", "console")
	if u, err := url.Parse(target); err == nil {
		var scope, id string
		if n, _ := splitStandingPath(u.Path, &scope, &id); n == 2 {
			req.SetPathValue("scope", scope)
			req.SetPathValue("id", id)
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// splitStandingPath splits /api/standing/{scope}/{id} (the id unescaped).
func splitStandingPath(p string, scope, id *string) (int, error) {
	const pre = standingAPI + "/"
	if len(p) <= len(pre) || p[:len(pre)] != pre {
		return 0, nil
	}
	rest := p[len(pre):]
	for i := 0; i < len(rest); i++ {
		if rest[i] == '/' {
			*scope, *id = rest[:i], rest[i+1:]
			return 2, nil
		}
	}
	return 0, nil
}

func (s *Server) pageStanding(w http.ResponseWriter, r *http.Request) {
	data := map[string]any{"SuspendCSRF": s.formToken(r, standingSuspendPath), "ResumeCSRF": s.formToken(r, standingResumePath)}
	rec := s.callStanding(r, http.MethodGet, standingAPI, nil)
	var l struct {
		Stops  []standingRow `json:"stops"`
		Errors []string      `json:"errors"`
	}
	var errs []string
	if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &l) != nil {
		errs = append(errs, "the stops could not be read")
	}
	for _, e := range l.Errors {
		errs = append(errs, "the "+e+" flags could not be read")
	}
	data["Rows"], data["Errors"] = l.Stops, errs
	switch r.URL.Query().Get("done") {
	case "suspended":
		data["Done"] = "Stopped."
	case "resumed":
		data["Done"] = "Resumed."
	}
	s.render(w, r, http.StatusOK, "standing", data)
}

// standingFail answers a refused form with the API's own short error.
func (s *Server) standingFail(w http.ResponseWriter, rec *httptest.ResponseRecorder) {
	var e struct {
		Error string `json:"error"`
	}
	_ = json.Unmarshal(rec.Body.Bytes(), &e)
	if e.Error == "" {
		e.Error = "refused"
	}
	code := rec.Code
	if code < 400 {
		code = http.StatusBadGateway
	}
	writeError(w, code, e.Error)
}

func (s *Server) suspendForm(w http.ResponseWriter, r *http.Request) {
	f := r.PostForm
	body, _ := json.Marshal(map[string]string{"scope": f.Get("scope"), "id": f.Get("id"), "action": f.Get("action"),
		"reason": f.Get("reason"), "until": f.Get("until")})
	rec := s.callStanding(r, http.MethodPost, standingAPI, body)
	if rec.Code != http.StatusCreated {
		s.standingFail(w, rec)
		return
	}
	http.Redirect(w, r, "/standing?done=suspended", http.StatusSeeOther)
}

func (s *Server) resumeForm(w http.ResponseWriter, r *http.Request) {
	f := r.PostForm
	target := standingAPI + "/" + url.PathEscape(f.Get("scope")) + "/" + url.PathEscape(f.Get("id"))
	if src := f.Get("source"); src != "" {
		target += "?source=" + url.QueryEscape(src)
	}
	rec := s.callStanding(r, http.MethodDelete, target, nil)
	if rec.Code != http.StatusOK {
		s.standingFail(w, rec)
		return
	}
	http.Redirect(w, r, "/standing?done=resumed", http.StatusSeeOther)
}
