package standing

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/jsonapi"
	"github.com/aupguard/aupguard/internal/observability/audit"
	"github.com/aupguard/aupguard/internal/store"
)

// maxRequest bounds a suspension request's body.
const maxRequest = 4 << 10

// Source is another family's automatic flag, listed beside the stops
// (the opt-out escalation flag, the bounce rate): List returns its flagged
// customers as stops of that source (Effect says what the flag does),
// Clear, when set, clears one.
type Source struct {
	Name  string
	List  func(ctx context.Context) ([]Stop, error)
	Clear func(ctx context.Context, customer string) (bool, error)
}

// API is the admin API of the stops:
//
//	GET    /api/standing                  every stop and every flag of the sources, and why
//	POST   /api/standing                  set a stop: {"scope","id","action","reason","until","who"}
//	DELETE /api/standing/{scope}/{id}     lift a stop (?source=NAME clears a source's flag)
//
// The admin server puts it behind the token and the cross-site guard.
type API struct {
	B       Backend
	Clock   clock.Clock
	Log     *slog.Logger
	Sources []Source
}

// Entry is a stop as listed: the stop and whether it is in force.
type Entry struct {
	Stop
	Active bool `json:"active"`
	// Effect says what a source's flag does (its family's finding).
	Effect string `json:"effect,omitempty"`
	// Clearable says whether DELETE can lift it.
	Clearable bool `json:"clearable"`
}

// Listing is the answer of GET /api/standing.
type Listing struct {
	Stops []Entry `json:"stops"`
	// Errors name the sources that could not be read.
	Errors []string `json:"errors,omitempty"`
}

// Request is the body of POST /api/standing.
type Request struct {
	Scope  string `json:"scope"`
	ID     string `json:"id"`
	Action string `json:"action"`
	Reason string `json:"reason"`
	// Until is an RFC 3339 time or a duration from now ("2h"); empty:
	// until lifted.
	Until string `json:"until,omitempty"`
	// Who names the person (the CLI sends the Unix user).
	Who string `json:"who,omitempty"`
}

// ParseUntil reads an end: RFC 3339, or a positive duration from now.
func ParseUntil(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d <= 0 {
			return time.Time{}, errors.New("until: want a positive duration")
		}
		return now.Add(d), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, errors.New("until: want an RFC 3339 time or a duration such as 2h")
	}
	if !t.After(now) {
		return time.Time{}, errors.New("until: in the past")
	}
	return t, nil
}

// Build turns a request into a stop set by via at now.
func (q Request) Build(via string, now time.Time) (Stop, error) {
	sc, err := ParseScope(q.Scope)
	if err != nil {
		return Stop{}, err
	}
	act, err := ParseAction(q.Action)
	if err != nil {
		return Stop{}, err
	}
	until, err := ParseUntil(q.Until, now)
	if err != nil {
		return Stop{}, err
	}
	who := via
	if q.Who != "" {
		who = via + ":" + q.Who
	}
	s := Stop{Scope: sc, ID: q.ID, Action: act, Reason: strings.TrimSpace(q.Reason), Until: until, Source: SourceManual, Who: who, When: now}
	return s, s.Validate()
}

// untilText is an end as written in the audit trail.
func untilText(t time.Time) string {
	if t.IsZero() {
		return "resumed"
	}
	return t.UTC().Format(time.RFC3339)
}

// viaOf is the interface a change came through (the aupguard command and
// the console say so).
func viaOf(r *http.Request) string {
	switch v := r.Header.Get("Aupguard-Via"); v {
	case "cli", "console":
		return v
	}
	return "api"
}

// ServeHTTP implements http.Handler.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/api/standing" && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		a.list(w, r)
	case r.URL.Path == "/api/standing" && r.Method == http.MethodPost:
		a.suspend(w, r)
	case r.PathValue("scope") != "" && r.Method == http.MethodDelete:
		a.resume(w, r)
	default:
		w.Header().Set("Allow", "GET, HEAD, POST, DELETE")
		jsonapi.Error(w, http.StatusMethodNotAllowed, "method not allowed")
	}
}

// List reads every stop and every source's flags.
func (a *API) List(ctx context.Context) (Listing, error) {
	now := a.Clock.Now()
	stops, err := a.B.List(ctx)
	if err != nil {
		return Listing{}, err
	}
	out := Listing{Stops: make([]Entry, 0, len(stops))}
	for _, s := range stops {
		out.Stops = append(out.Stops, Entry{Stop: s, Active: s.Active(now), Clearable: true})
	}
	for _, src := range a.Sources {
		l, err := src.List(ctx)
		if err != nil {
			a.Log.Warn("standing: reading a source's flags failed", "source", src.Name, "err", err)
			out.Errors = append(out.Errors, src.Name)
			continue
		}
		for _, s := range l {
			out.Stops = append(out.Stops, Entry{Stop: s, Active: true, Effect: s.Reason, Clearable: src.Clear != nil})
		}
	}
	sort.SliceStable(out.Stops, func(i, j int) bool { return out.Stops[i].When.After(out.Stops[j].When) })
	if len(out.Stops) > maxStopsShown {
		out.Stops = out.Stops[:maxStopsShown]
	}
	return out, nil
}

func (a *API) list(w http.ResponseWriter, r *http.Request) {
	l, err := a.List(r.Context())
	if err != nil {
		a.fail(w, "reading the stops", err)
		return
	}
	jsonapi.Write(w, http.StatusOK, l)
}

func (a *API) fail(w http.ResponseWriter, what string, err error) {
	code := http.StatusInternalServerError
	if errors.Is(err, store.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) {
		code = http.StatusServiceUnavailable
	}
	a.Log.Warn("standing: "+what+" failed", "err", err)
	jsonapi.Error(w, code, what+" failed")
}

func (a *API) suspend(w http.ResponseWriter, r *http.Request) {
	var q Request
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxRequest))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&q); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			jsonapi.Error(w, http.StatusRequestEntityTooLarge, "request too large")
			return
		}
		jsonapi.Error(w, http.StatusBadRequest, "want a JSON object: scope, id, action, reason, until, who")
		return
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		jsonapi.Error(w, http.StatusBadRequest, "one JSON object only")
		return
	}
	if len(q.Who) > 64 || strings.ContainsFunc(q.Who, func(r rune) bool { return r < 0x21 || r == 0x7f }) {
		jsonapi.Error(w, http.StatusBadRequest, "who: at most 64 printable characters")
		return
	}
	if q.Who == "" {
		// The token's name; the audit trail records it in any case.
		q.Who = audit.ActorOf(r.Context()).Who
	}
	s, err := q.Build(viaOf(r), a.Clock.Now())
	if err != nil {
		jsonapi.Error(w, http.StatusBadRequest, err.Error())
		return
	}
	if _, err := a.B.Put(r.Context(), s, false); err != nil {
		a.fail(w, "setting the stop", err)
		return
	}
	audit.Describe(r.Context(), "standing.suspend", s.Key(), "", fmt.Sprintf("%s: %s (until %s)", s.Action, s.Reason, untilText(s.Until)))
	a.Log.Warn("sender stopped", "event", "standing_set", "scope", s.Scope, "id", s.ID, "action", s.Action,
		"reason", s.Reason, "until", s.Until, "who", s.Who)
	jsonapi.Write(w, http.StatusCreated, Entry{Stop: s, Active: true, Clearable: true})
}

func (a *API) resume(w http.ResponseWriter, r *http.Request) {
	sc, err := ParseScope(r.PathValue("scope"))
	if err != nil {
		jsonapi.Error(w, http.StatusBadRequest, err.Error())
		return
	}
	id := r.PathValue("id")
	if err := ValidID(id); err != nil {
		jsonapi.Error(w, http.StatusBadRequest, err.Error())
		return
	}
	if name := r.URL.Query().Get("source"); name != "" && name != SourceManual && name != SourceContent {
		a.clearSource(w, r, name, sc, id)
		return
	}
	s, ok, err := a.B.Remove(r.Context(), sc, id)
	if err != nil {
		a.fail(w, "lifting the stop", err)
		return
	}
	if !ok {
		jsonapi.Error(w, http.StatusNotFound, "no such stop")
		return
	}
	// A cleared content flag starts counting over.
	if err := a.B.ResetCount(r.Context(), Key(sc, id)); err != nil {
		a.Log.Warn("standing: resetting the content count failed", "scope", sc, "id", id, "err", err)
	}
	audit.Describe(r.Context(), "standing.resume", s.Key(), fmt.Sprintf("%s %s: %s", s.Source, s.Action, s.Reason), "resumed")
	a.Log.Warn("sender resumed", "event", "standing_lifted", "scope", sc, "id", id, "source", s.Source, "via", viaOf(r))
	jsonapi.Write(w, http.StatusOK, Entry{Stop: s, Active: false, Clearable: true})
}

func (a *API) clearSource(w http.ResponseWriter, r *http.Request, name string, sc Scope, id string) {
	for _, src := range a.Sources {
		if src.Name != name {
			continue
		}
		if src.Clear == nil || sc != ScopeCustomer {
			jsonapi.Error(w, http.StatusConflict, "this flag is not cleared here (it follows its rate)")
			return
		}
		ok, err := src.Clear(r.Context(), id)
		if err != nil {
			a.fail(w, "clearing the flag", err)
			return
		}
		if !ok {
			jsonapi.Error(w, http.StatusNotFound, "no such flag")
			return
		}
		audit.Describe(r.Context(), "standing.clear", name+" "+Key(sc, id), name+" flag", "cleared")
		a.Log.Info("customer flag cleared", "event", "flag_cleared", "source", name, "customer", id, "via", viaOf(r))
		jsonapi.Write(w, http.StatusOK, map[string]any{"cleared": true, "source": name, "id": id})
		return
	}
	jsonapi.Error(w, http.StatusBadRequest, "unknown source")
}
