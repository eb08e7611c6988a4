package ratelimit

import (
	"testing"
	"time"
)

func TestLookCache(t *testing.T) {
	perMin := Op{Kind: KindRate, Name: "messages_per_minute", Key: "messages_per_minute", Limit: 3, Period: time.Minute, N: 1}
	perDayBytes := Op{Kind: KindWindow, Name: "bytes_per_day", Key: "bytes_per_day", Limit: 1000, Period: 24 * time.Hour, N: 400}
	spike := Op{Kind: KindSpike, Name: FindingSpike, N: 1}
	// The same limit of a login and of the reseller: other counters.
	loginMin := perMin
	loginMin.Key, loginMin.Scope, loginMin.Owner = loginKey("alice")+":messages_per_minute", ScopeLogin, "alice"
	resellerMin := perMin
	resellerMin.Scope, resellerMin.Owner = ScopeReseller, "hostco"
	res := func(used ...int64) Result {
		r := Result{Allowed: true, Binding: -1}
		for _, u := range used {
			r.Ops = append(r.Ops, OpResult{Used: u})
		}
		return r
	}
	tests := []struct {
		name    string
		record  []Op
		result  Result
		applied bool
		after   time.Duration
		look    []Op
		want    bool
	}{
		{"no snapshot: ask the store", nil, Result{}, false, 0, []Op{perMin}, false},
		{"room in every limit", []Op{perMin, perDayBytes}, res(1, 100), false, 0, []Op{perMin, perDayBytes}, true},
		{"a reservation counts in the snapshot", []Op{perMin, perDayBytes}, res(2, 100), true, 0, []Op{perMin}, false},
		{"a full limit: ask the store (its refusal carries the retry time)", []Op{perMin}, res(3), false, 0, []Op{perMin}, false},
		{"a larger declared size than the room left", []Op{perDayBytes}, res(700), false, 0, []Op{perDayBytes}, false},
		{"a limit the snapshot does not have", []Op{perMin}, res(0), false, 0, []Op{perMin, perDayBytes}, false},
		{"a second old: ask the store", []Op{perMin}, res(0), false, lookFresh, []Op{perMin}, false},
		{"just under a second old", []Op{perMin}, res(0), false, lookFresh - time.Millisecond, []Op{perMin}, true},
		{"spike ops are not part of the look", []Op{perMin, spike}, res(0, 0), true, 0, []Op{perMin}, true},
		{"a login's counter is not the customer's", []Op{perMin}, res(0), false, 0, []Op{perMin, loginMin}, false},
		{"a reseller's counter is not the customer's", []Op{perMin}, res(0), false, 0, []Op{perMin, resellerMin}, false},
		{"a full reseller counter: ask the store", []Op{perMin, loginMin, resellerMin}, res(0, 0, 3), false, 0, []Op{perMin, loginMin, resellerMin}, false},
		{"room in the customer's, the login's and the reseller's", []Op{perMin, loginMin, resellerMin}, res(0, 1, 2), false, 0, []Op{perMin, loginMin, resellerMin}, true},
		{"a result that does not match its ops is ignored", []Op{perMin}, res(0, 0), false, 0, []Op{perMin}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			now := time.Unix(1_800_000_000, 0)
			l := newLookCache(func() time.Time { return now })
			if tc.record != nil {
				l.record("acme", tc.record, tc.result, tc.applied)
			}
			now = now.Add(tc.after)
			if got := l.allows("acme", tc.look); got != tc.want {
				t.Errorf("allows = %v, want %v", got, tc.want)
			}
			if l.allows("other", tc.look) {
				t.Error("another customer's look used acme's snapshot")
			}
		})
	}
}
