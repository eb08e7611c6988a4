package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/customer"
	"github.com/aupguard/aupguard/internal/observability/audit"
	"github.com/aupguard/aupguard/internal/store"
)

// Directory is the live customer directory the API changes
// (*customer.Manager).
type Directory interface {
	List() []customer.Entry
	Page(offset, limit int) ([]customer.Entry, int)
	Get(id string) (customer.Entry, bool)
	Add(ctx context.Context, c config.Customer, via string) (customer.Change, error)
	Replace(ctx context.Context, c config.Customer, via string) (customer.Change, error)
	Set(ctx context.Context, id string, patch map[string]any, via string) (customer.Change, error)
	Remove(ctx context.Context, id, via string) (customer.Change, error)
	ImportFrom(ctx context.Context, src customer.ImportSource, via string) (customer.ImportResult, error)
	Log(ctx context.Context, id string, limit int) ([]customer.Change, error)
	Version() int64
}

// directoryRoutes serves the customer directory, behind the token:
//
//	GET    /api/directory                 the customers, a page at a time (limit, cursor): definition and source (config or store)
//	POST   /api/customers                 add a customer (JSON definition, config field names)
//	GET    /api/customers/{id}/definition one definition and its source
//	PUT    /api/customers/{id}            replace (or add) a definition
//	PATCH  /api/customers/{id}            change fields (JSON merge patch, RFC 7386)
//	DELETE /api/customers/{id}            remove a store customer
//	POST   /api/customers/import          add or replace many, all or none (JSON, NDJSON or YAML; see dirImport)
//	GET    /api/changes                   the change log (customer=ID, limit)
//	GET    /api/customers/{id}/changes    one customer's changes
//
// A definition is validated exactly like the config file's (400 with
// every error naming its field); the change is in force on every gateway
// sharing the store within a second.
func (s *Server) directoryRoutes(mux *routeMux) {
	if s.o.Directory == nil {
		return
	}
	mux.HandleFunc("GET /api/directory", s.dirList)
	mux.HandleFunc("POST /api/customers", s.dirAdd)
	mux.HandleFunc("GET /api/customers/{id}/definition", s.dirGet)
	mux.HandleFunc("PUT /api/customers/{id}", s.dirPut)
	mux.HandleFunc("PATCH /api/customers/{id}", s.dirPatch)
	mux.HandleFunc("DELETE /api/customers/{id}", s.dirDelete)
	mux.HandleFunc("POST /api/customers/import", s.dirImport)
	mux.HandleFunc("GET /api/changes", s.dirChanges)
	mux.HandleFunc("GET /api/customers/{id}/changes", s.dirChanges)
}

const maxDefinition = 1 << 20

func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, bool) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", limit))
		return nil, false
	}
	return b, true
}

// dirFail answers a refused change: 400 with the field errors, 404, 409,
// or 503 for a store outage.
func (s *Server) dirFail(w http.ResponseWriter, r *http.Request, err error) {
	var ve customer.ValidationError
	switch {
	case errors.As(err, &ve):
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "invalid customer definition", "errors": ve})
	case errors.Is(err, customer.ErrNotFound):
		writeError(w, http.StatusNotFound, "no such customer")
	case errors.Is(err, customer.ErrExists):
		writeError(w, http.StatusConflict, "customer already exists")
	default:
		s.fail(w, r, "changing the customer directory", err)
	}
}

// via is the interface a change came through: the aupguard command says
// so in its requests (Aupguard-Via: cli), anything else is the API.
func via(r *http.Request) string {
	if r.Header.Get("Aupguard-Via") == customer.ViaCLI {
		return customer.ViaCLI
	}
	return customer.ViaAPI
}

// forced reads the request's ?force= (1/true/yes or 0/false/no, empty:
// false); a bad value is answered 400 and ok is false. Forcing sets
// force: true on the definitions written (it stays on them: see
// docs/config.md).
func forced(w http.ResponseWriter, r *http.Request) (force, ok bool) {
	switch strings.ToLower(r.URL.Query().Get("force")) {
	case "", "0", "false", "no":
		return false, true
	case "1", "true", "yes":
		return true, true
	}
	badDefinition(w, errors.New("force: want 1 or 0"))
	return false, false
}

func badDefinition(w http.ResponseWriter, err error) {
	var ve customer.ValidationError
	if errors.As(err, &ve) {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "invalid customer definition", "errors": ve})
		return
	}
	writeJSON(w, http.StatusBadRequest, map[string]any{"error": "invalid customer definition",
		"errors": customer.ValidationError{{Message: err.Error()}}})
}

// Paging of the listings (GET /api/directory, GET /api/customers, the
// console's customer list): limit entries per page (default
// defaultPage, at most maxPage), from an opaque cursor the previous page
// returned as next_cursor (absent on the last page).
const (
	defaultPage = 100
	maxPage     = 1000
)

// page reads limit and cursor; false when it answered 400.
func page(w http.ResponseWriter, r *http.Request) (offset, limit int, ok bool) {
	q := r.URL.Query()
	limit = defaultPage
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > maxPage {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("limit: want 1 to %d", maxPage))
			return 0, 0, false
		}
		limit = n
	}
	if c := q.Get("cursor"); c != "" {
		n, err := strconv.Atoi(c)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, "cursor: not one this server returned")
			return 0, 0, false
		}
		offset = n
	}
	return offset, limit, true
}

// pageInfo adds total and next_cursor to a listing's answer.
func pageInfo(out map[string]any, offset, n, total int) map[string]any {
	out["total"] = total
	if offset+n < total {
		out["next_cursor"] = strconv.Itoa(offset + n)
	}
	return out
}

func (s *Server) dirList(w http.ResponseWriter, r *http.Request) {
	offset, limit, ok := page(w, r)
	if !ok {
		return
	}
	es, total := s.o.Directory.Page(offset, limit)
	out := make([]map[string]any, 0, len(es))
	for _, e := range es {
		m, err := customer.MarshalEntry(e)
		if err != nil {
			s.fail(w, r, "listing", err)
			return
		}
		out = append(out, m)
	}
	writeJSON(w, http.StatusOK, pageInfo(map[string]any{"version": s.o.Directory.Version(), "precedence": customer.Precedence, "customers": out}, offset, len(out), total))
}

func (s *Server) dirGet(w http.ResponseWriter, r *http.Request) {
	e, ok := s.o.Directory.Get(r.PathValue("id"))
	if !ok {
		writeError(w, http.StatusNotFound, "no such customer")
		return
	}
	m, err := customer.MarshalEntry(e)
	if err != nil {
		s.fail(w, r, "reading", err)
		return
	}
	writeJSON(w, http.StatusOK, m)
}

func (s *Server) dirAdd(w http.ResponseWriter, r *http.Request) {
	b, ok := readBody(w, r, maxDefinition)
	if !ok {
		return
	}
	force, ok := forced(w, r)
	if !ok {
		return
	}
	c, err := customer.Decode(b)
	if err != nil {
		badDefinition(w, err)
		return
	}
	c.Force = c.Force || force
	before := ""
	ch, err := s.o.Directory.Add(r.Context(), c, via(r))
	if err != nil {
		s.dirFail(w, r, err)
		return
	}
	s.dirChanged(r, ch, before)
	writeJSON(w, http.StatusCreated, map[string]any{"change": ch})
}

func (s *Server) dirPut(w http.ResponseWriter, r *http.Request) {
	b, ok := readBody(w, r, maxDefinition)
	if !ok {
		return
	}
	force, ok := forced(w, r)
	if !ok {
		return
	}
	c, err := customer.Decode(b)
	if err != nil {
		badDefinition(w, err)
		return
	}
	c.Force = c.Force || force
	if c.ID == "" {
		c.ID = r.PathValue("id")
	}
	if c.ID != r.PathValue("id") {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "invalid customer definition",
			"errors": customer.ValidationError{{Field: "id", Message: "differs from the id in the path"}}})
		return
	}
	before := s.definitionSummary(c.ID)
	ch, err := s.o.Directory.Replace(r.Context(), c, via(r))
	if err != nil {
		s.dirFail(w, r, err)
		return
	}
	s.dirChanged(r, ch, before)
	writeJSON(w, http.StatusOK, map[string]any{"change": ch})
}

func (s *Server) dirPatch(w http.ResponseWriter, r *http.Request) {
	b, ok := readBody(w, r, maxDefinition)
	if !ok {
		return
	}
	var patch map[string]any
	if err := json.Unmarshal(b, &patch); err != nil || patch == nil {
		badDefinition(w, errors.New("want a JSON object (merge patch, RFC 7386)"))
		return
	}
	force, ok := forced(w, r)
	if !ok {
		return
	}
	if force {
		patch["force"] = true
	}
	before := s.definitionSummary(r.PathValue("id"))
	ch, err := s.o.Directory.Set(r.Context(), r.PathValue("id"), patch, via(r))
	if err != nil {
		s.dirFail(w, r, err)
		return
	}
	s.dirChanged(r, ch, before)
	writeJSON(w, http.StatusOK, map[string]any{"change": ch})
}

func (s *Server) dirDelete(w http.ResponseWriter, r *http.Request) {
	before := s.definitionSummary(r.PathValue("id"))
	ch, err := s.o.Directory.Remove(r.Context(), r.PathValue("id"), via(r))
	if err != nil {
		s.dirFail(w, r, err)
		return
	}
	s.dirChanged(r, ch, before)
	writeJSON(w, http.StatusOK, map[string]any{"change": ch})
}

// dirImport adds or replaces many customers, all or none. The body is read
// as a stream in its Content-Type's format (customer.ImportFormat):
// application/json ({"customers": [...]} or [...]) and
// application/x-ndjson (one definition a line) up to
// customer.MaxImportBody, anything else as one YAML document up to
// customer.MaxYAMLImport; at most customer.MaxImportEntries
// definitions of at most customer.MaxEntryBytes each. A larger body is
// answered 413 before anything is applied. The whole list is validated
// before anything is written, with the directory rules of every write;
// ?force=1 sets force: true on every entry (the rules it waives are
// listed per customer in the answer's "forced"). The answer says exactly
// what was applied: 200 with the counts, versions and waived rules, or an
// error and nothing.
func (s *Server) dirImport(w http.ResponseWriter, r *http.Request) {
	format := customer.ImportFormat(r.Header.Get("Content-Type"))
	limit := int64(customer.MaxImportBody)
	if format == customer.FormatYAML {
		limit = customer.MaxYAMLImport
	}
	if r.ContentLength > limit {
		tooLarge(w, format, limit)
		return
	}
	force, ok := forced(w, r)
	if !ok {
		return
	}
	body := http.MaxBytesReader(w, r.Body, limit)
	var src customer.ImportSource = customer.NewImportReader(body, format)
	if force {
		src = customer.ForceAll(src)
	}
	res, err := s.o.Directory.ImportFrom(r.Context(), src, via(r))
	if err != nil {
		var mbe *http.MaxBytesError
		var ve customer.ValidationError
		switch {
		case errors.As(err, &mbe) || (format == customer.FormatYAML && strings.Contains(err.Error(), "YAML import larger than")):
			tooLarge(w, format, limit)
		case errors.As(err, &ve):
			writeJSON(w, http.StatusBadRequest, map[string]any{"error": "invalid import: nothing applied", "errors": ve})
		case errors.Is(err, customer.ErrOutcomeUnknown):
			s.log.Error("customer import outcome unknown", "event", "directory_import", "err", err)
			writeError(w, http.StatusServiceUnavailable, "store unreachable while committing: the import may or may not have been applied; check GET /api/changes")
		case errors.Is(err, customer.ErrVersionMoved):
			writeError(w, http.StatusConflict, "the directory kept changing during the import: nothing applied; retry")
		case errors.Is(err, store.ErrUnavailable), errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
			s.log.Warn("customer import not applied", "event", "directory_import", "err", err)
			writeError(w, http.StatusServiceUnavailable, "store unavailable: nothing applied; retry")
		default:
			// The input: a syntax error, an entry too large to read past,
			// more customers than one import may list.
			writeJSON(w, http.StatusBadRequest, map[string]any{"error": "invalid import: nothing applied", "errors": customer.ValidationError{{Message: err.Error()}}})
		}
		return
	}
	s.log.Info("customer directory changed", "event", "directory_change", "op", customer.OpImport, "customers", res.Imported,
		"added", res.Added, "replaced", res.Replaced, "first_version", res.First, "last_version", res.Last, "forced", len(res.Forced), "via", via(r))
	audit.Describe(r.Context(), "customer.import", "", "", fmt.Sprintf("%d customers (%d added, %d replaced), versions %d to %d", res.Imported, res.Added, res.Replaced, res.First, res.Last))
	writeJSON(w, http.StatusOK, res)
}

func tooLarge(w http.ResponseWriter, format string, limit int64) {
	msg := fmt.Sprintf("body larger than %d bytes (the %s import's limit): nothing applied", limit, format)
	if format == customer.FormatYAML {
		msg += "; send application/json or application/x-ndjson for more"
	}
	writeError(w, http.StatusRequestEntityTooLarge, msg)
}

func (s *Server) dirChanges(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if id == "" {
		id = r.URL.Query().Get("customer")
	}
	limit := 100
	if l := r.URL.Query().Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > customer.LogSize {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("limit: want 1 to %d", customer.LogSize))
			return
		}
		limit = n
	}
	cs, err := s.o.Directory.Log(r.Context(), id, limit)
	if err != nil {
		s.fail(w, r, "reading the change log", err)
		return
	}
	if cs == nil {
		cs = []customer.Change{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"changes": cs})
}

// definitionSummary is a customer's definition before a change, for the
// audit trail ("" when there is none).
func (s *Server) definitionSummary(id string) string {
	e, ok := s.o.Directory.Get(id)
	if !ok {
		return ""
	}
	b, err := customer.Encode(e.Customer)
	if err != nil {
		return ""
	}
	return string(b)
}

// dirChanged logs a directory change and describes it for the audit
// trail.
func (s *Server) dirChanged(r *http.Request, ch customer.Change, before string) {
	s.log.Info("customer directory changed", "event", "directory_change", "op", ch.Op, "customer", ch.ID, "via", ch.Via, "version", ch.Version)
	after := string(ch.Definition)
	if len(ch.Fields) > 0 {
		after = "fields " + strings.Join(ch.Fields, ", ") + ": " + after
	}
	audit.Describe(r.Context(), "customer."+ch.Op, ch.ID, before, after)
}
