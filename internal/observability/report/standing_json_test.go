package report

import (
	"context"
	"errors"
	"testing"

	"github.com/aupguard/aupguard/internal/checks/optout"
)

// TestStandingJSONFallsBackOnlyWithoutGateway: a gateway's answer is
// decoded; no gateway reads the direct standing; any other failure, or an
// answer that is not a standing, is an error (never the direct figures).
func TestStandingJSONFallsBackOnlyWithoutGateway(t *testing.T) {
	direct := func(_ context.Context, id string) (*optout.CustomerStatus, error) {
		return &optout.CustomerStatus{Customer: id, RateLevel: "direct"}, nil
	}
	for _, tc := range []struct {
		name    string
		body    string
		err     error
		want    string // RateLevel; "" when an error is wanted
		wantErr bool
	}{
		{name: "gateway answers", body: `{"customer":"acme","rate_level":"warn","complaints":4}`, want: "warn"},
		{name: "no gateway", err: ErrNoGateway, want: "direct"},
		{name: "gateway refuses", err: errors.New("admin API: 401 Unauthorized"), wantErr: true},
		{name: "not a standing", body: `["acme"]`, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := StandingJSON(func(context.Context, string) ([]byte, error) { return []byte(tc.body), tc.err }, direct)
			st, err := f(context.Background(), "acme")
			if tc.wantErr {
				if err == nil {
					t.Fatalf("no error, standing %+v", st)
				}
				return
			}
			if err != nil || st.Customer != "acme" || st.RateLevel != tc.want {
				t.Fatalf("%+v %v, want rate level %q", st, err, tc.want)
			}
		})
	}
}
