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
)

// Directory is the live customer directory the API changes
// (*customer.Manager).
type Directory interface {
	List() []customer.Entry
	Get(id string) (customer.Entry, bool)
	Add(ctx context.Context, c config.Customer, via string) (customer.Change, error)
	Replace(ctx context.Context, c config.Customer, via string) (customer.Change, error)
	Set(ctx context.Context, id string, patch map[string]any, via string) (customer.Change, error)
	Remove(ctx context.Context, id, via string) (customer.Change, error)
	Import(ctx context.Context, list []config.Customer, via string) ([]customer.Change, error)
	Log(ctx context.Context, id string, limit int) ([]customer.Change, error)
	Version() int64
}

// directoryRoutes serves the customer directory, behind the token:
//
//	GET    /api/directory                 every customer: definition and source (config or store)
//	POST   /api/customers                 add a customer (JSON definition, config field names)
//	GET    /api/customers/{id}/definition one definition and its source
//	PUT    /api/customers/{id}            replace (or add) a definition
//	PATCH  /api/customers/{id}            change fields (JSON merge patch, RFC 7386)
//	DELETE /api/customers/{id}            remove a store customer
//	POST   /api/customers/import          add or replace many, all or none ({"customers": [...]} in JSON or YAML)
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

func (s *Server) dirList(w http.ResponseWriter, r *http.Request) {
	es := s.o.Directory.List()
	out := make([]map[string]any, 0, len(es))
	for _, e := range es {
		m, err := customer.MarshalEntry(e)
		if err != nil {
			s.fail(w, r, "listing", err)
			return
		}
		out = append(out, m)
	}
	writeJSON(w, http.StatusOK, map[string]any{"version": s.o.Directory.Version(), "precedence": customer.Precedence, "customers": out})
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
	ch, err := s.o.Directory.Add(r.Context(), c, via(r))
	if err != nil {
		s.dirFail(w, r, err)
		return
	}
	s.log.Info("customer directory changed", "event", "directory_change", "op", ch.Op, "customer", ch.ID, "via", ch.Via, "version", ch.Version)
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
	ch, err := s.o.Directory.Replace(r.Context(), c, via(r))
	if err != nil {
		s.dirFail(w, r, err)
		return
	}
	s.log.Info("customer directory changed", "event", "directory_change", "op", ch.Op, "customer", ch.ID, "via", ch.Via, "version", ch.Version)
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
	ch, err := s.o.Directory.Set(r.Context(), r.PathValue("id"), patch, via(r))
	if err != nil {
		s.dirFail(w, r, err)
		return
	}
	s.log.Info("customer directory changed", "event", "directory_change", "op", ch.Op, "customer", ch.ID, "via", ch.Via, "version", ch.Version)
	writeJSON(w, http.StatusOK, map[string]any{"change": ch})
}

func (s *Server) dirDelete(w http.ResponseWriter, r *http.Request) {
	ch, err := s.o.Directory.Remove(r.Context(), r.PathValue("id"), via(r))
	if err != nil {
		s.dirFail(w, r, err)
		return
	}
	s.log.Info("customer directory changed", "event", "directory_change", "op", ch.Op, "customer", ch.ID, "via", ch.Via, "version", ch.Version)
	writeJSON(w, http.StatusOK, map[string]any{"change": ch})
}

func (s *Server) dirImport(w http.ResponseWriter, r *http.Request) {
	b, ok := readBody(w, r, 256<<20)
	if !ok {
		return
	}
	list, err := customer.DecodeList(b)
	if err != nil {
		badDefinition(w, err)
		return
	}
	force, ok := forced(w, r)
	if !ok {
		return
	}
	for i := range list {
		list[i].Force = list[i].Force || force
	}
	cs, err := s.o.Directory.Import(r.Context(), list, via(r))
	if err != nil {
		s.dirFail(w, r, err)
		return
	}
	s.log.Info("customer directory changed", "event", "directory_change", "op", customer.OpImport, "customers", len(cs), "via", via(r))
	reply := map[string]any{"imported": len(cs)}
	var forcedRules []map[string]any
	for _, c := range cs {
		if len(c.Forced) > 0 {
			forcedRules = append(forcedRules, map[string]any{"customer": c.ID, "forced": c.Forced})
		}
	}
	if forcedRules != nil {
		reply["forced"] = forcedRules
	}
	writeJSON(w, http.StatusOK, reply)
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
