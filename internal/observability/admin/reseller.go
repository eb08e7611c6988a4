package admin

import (
	"context"
	"net/http"
	"time"

	"github.com/aupguard/aupguard/internal/observability/report"
	"github.com/aupguard/aupguard/ratelimit"
)

// resellerPageRows bounds the customers one reseller page lists with
// their standing (one store read each).
const resellerPageRows = 100

// resellerRow is one customer of a reseller on its page.
type resellerRow struct {
	ID, Name, Mode string
	// Last24h are its decisions of the last 24 hours (nil: no record).
	Last24h *report.Counts
	// Flag, ComplaintRate and RateLevel are its opt-out standing ("" and
	// 0 when unknown).
	Flag          string
	ComplaintRate float64
	RateLevel     string
}

// pageResellers lists the resellers of the config with their number of
// customers.
func (s *Server) pageResellers(w http.ResponseWriter, r *http.Request) {
	cfg := s.cfg.Load()
	n := map[string]int{}
	for _, c := range cfg.Customers {
		if c.Reseller != "" {
			n[c.Reseller]++
		}
	}
	type row struct {
		ID, Name  string
		Customers int
		Contacts  []string
	}
	rows := make([]row, 0, len(cfg.Resellers))
	for _, rs := range cfg.Resellers {
		rows = append(rows, row{rs.ID, rs.Name, n[rs.ID], rs.AbuseContacts})
	}
	s.render(w, r, http.StatusOK, "resellers", map[string]any{"Rows": rows})
}

// pageReseller shows one reseller: its contacts, its reseller-wide limits
// and their use, and its customers with their standing and use.
func (s *Server) pageReseller(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	cfg := s.cfg.Load()
	rs := cfg.Reseller(id)
	data := map[string]any{"ID": id}
	if rs == nil {
		s.render(w, r, http.StatusNotFound, "reseller", data)
		return
	}
	data["Known"], data["Name"], data["Contacts"] = true, rs.Name, rs.AbuseContacts
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	var errs []string
	counts, err := s.last24h(ctx, "")
	if err != nil {
		errs = append(errs, "decision record unavailable")
	}
	var rows []resellerRow
	total := 0
	for _, c := range cfg.Customers {
		if c.Reseller != id {
			continue
		}
		total++
		if len(rows) == resellerPageRows {
			continue
		}
		row := resellerRow{ID: c.ID, Name: c.Name, Mode: c.Mode}
		if counts != nil {
			n := counts[c.ID]
			row.Last24h = &n
		}
		if s.o.Standing != nil {
			if st, err := s.o.Standing(ctx, c.ID); err == nil && st != nil {
				row.ComplaintRate, row.RateLevel = st.ComplaintRate, st.RateLevel
				if st.Flag != nil {
					row.Flag = st.Flag.Reason
				}
			}
		}
		rows = append(rows, row)
	}
	data["Rows"], data["Total"] = rows, total
	// The reseller-wide use is read with any of its customers' quotas
	// (the same counters for all of them).
	if s.o.Quota != nil && len(rows) > 0 {
		if q, err := s.o.Quota(ctx, rows[0].ID); err != nil {
			errs = append(errs, "limits and use unavailable")
		} else if qr, ok := q.(ratelimit.QuotaReport); ok && qr.Reseller == id {
			data["Limits"] = qr.ResellerLimits
		}
	}
	data["Errors"] = errs
	s.render(w, r, http.StatusOK, "reseller", data)
}
