package admin

import (
	"encoding/json"
	"time"
)

// quotaView is what the console shows of a customer's limits and use: the
// fields of the quota source's JSON (setup.Host.Quota) that its tables
// read, so that the console knows the answer's shape but not its family.
type quotaView struct {
	Limits         []limitView `json:"limits"`
	Reseller       string      `json:"reseller"`
	ResellerLimits []limitView `json:"reseller_limits"`
	Spike          *spikeView  `json:"spike"`
}

// limitView is one limit and its use (a row of the console's tables).
type limitView struct {
	Name       string     `json:"name"`
	Kind       string     `json:"kind"`
	Unit       string     `json:"unit"`
	Limit      int64      `json:"limit"`
	Unlimited  bool       `json:"unlimited"`
	Period     string     `json:"period"`
	Used       *int64     `json:"used"`
	Remaining  *int64     `json:"remaining"`
	NextFreeAt *time.Time `json:"next_free_at"`
	FreeAt     *time.Time `json:"free_at"`
}

// spikeView is the spike detector's current view.
type spikeView struct {
	Window    string  `json:"window"`
	Count     int64   `json:"count"`
	Baseline  float64 `json:"baseline_per_hour"`
	Threshold float64 `json:"threshold"`
	Factor    float64 `json:"factor"`
	Floor     int64   `json:"floor"`
	Spiking   bool    `json:"spiking"`
}

// quotaOf reads q, a quota source's answer, through its JSON (the same
// the API serves).
func quotaOf(q any) (*quotaView, error) {
	b, err := json.Marshal(q)
	if err != nil {
		return nil, err
	}
	var v quotaView
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, err
	}
	return &v, nil
}
