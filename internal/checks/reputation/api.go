package reputation

import (
	"context"
	"net/http"

	"github.com/aupguard/aupguard/internal/jsonapi"
)

// Overview is the reputation state for the admin API and the reports.
type Overview struct {
	// Bounces are the customers' bounce standings over the window.
	Bounces []Standing `json:"bounces"`
	// Listings are the watched addresses' states in every zone.
	Listings []Listing `json:"listings"`
}

// Overview reads every configured customer's standing and every watched
// listing (with history).
func (s *Service) Overview(ctx context.Context) (Overview, error) {
	cfg := s.Config()
	ids := make([]string, 0, len(cfg.Customers))
	for _, c := range cfg.Customers {
		ids = append(ids, c.ID)
	}
	var o Overview
	var err error
	if len(ids) > 0 {
		if o.Bounces, err = s.Standings(ctx, ids); err != nil {
			return o, err
		}
	}
	if keys := Keys(s.Reputation()); len(keys) > 0 {
		ctx, cancel := s.Store.Context(ctx)
		defer cancel()
		if o.Listings, err = s.Backend.Listings(ctx, keys); err != nil {
			return o, err
		}
	}
	return o, nil
}

// API serves GET /api/reputation (every customer's bounce standing and
// every listing with its history) and GET /api/reputation/{customer}.
func (s *Service) API() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			jsonapi.Error(w, http.StatusMethodNotAllowed, "method not allowed")
			return
		}
		if id := r.PathValue("customer"); id != "" {
			known := false
			for _, c := range s.Config().Customers {
				known = known || c.ID == id
			}
			if !known {
				jsonapi.Error(w, http.StatusNotFound, "no such customer")
				return
			}
			st, err := s.Standing(r.Context(), id)
			if err != nil {
				s.Log.Error("reputation API", "err", err)
				jsonapi.Error(w, http.StatusServiceUnavailable, "store unavailable")
				return
			}
			jsonapi.Write(w, http.StatusOK, st)
			return
		}
		o, err := s.Overview(r.Context())
		if err != nil {
			s.Log.Error("reputation API", "err", err)
			jsonapi.Error(w, http.StatusServiceUnavailable, "store unavailable")
			return
		}
		jsonapi.Write(w, http.StatusOK, o)
	})
}
