package ratelimit

import (
	"context"
	"math/rand/v2"
	"sort"
	"testing"
	"time"

	"github.com/aupguard/aupguard/internal/clock"
)

// hourlyPattern is a customer's normal week: office hours with a
// newsletter every weekday at 9h (sent within half an hour), quiet nights
// and evenings, a calm weekend with a Saturday-morning mailing.
func hourlyPattern(day time.Weekday, hour int) (count, spreadMinutes int) {
	weekend := day == time.Saturday || day == time.Sunday
	switch {
	case weekend && day == time.Saturday && hour == 10:
		return 150, 30
	case weekend:
		return 20, 60
	case hour == 9:
		return 400, 30
	case hour >= 8 && hour <= 17:
		return 120, 60
	case hour >= 18:
		return 30, 60
	default:
		return 6, 60
	}
}

// series returns the send times of weeks of the normal pattern from start
// (a Monday 00:00 UTC), each hour's messages at random minutes and seconds
// within its spread, plus extra messages per minute from burstAt on for
// burstFor.
func series(rng *rand.Rand, start time.Time, weeks int, burstAt time.Time, burstPerHour int, burstFor time.Duration) []time.Time {
	var out []time.Time
	for h := 0; h < weeks*168; h++ {
		t := start.Add(time.Duration(h) * time.Hour)
		n, spread := hourlyPattern(t.Weekday(), t.Hour())
		for i := 0; i < n; i++ {
			out = append(out, t.Add(time.Duration(rng.IntN(spread*60))*time.Second))
		}
	}
	if burstPerHour > 0 {
		n := int(float64(burstPerHour) * burstFor.Hours())
		for i := 0; i < n; i++ {
			out = append(out, burstAt.Add(time.Duration(i)*burstFor/time.Duration(n)))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Before(out[j]) })
	return out
}

// TestSpikeSyntheticSeries learns four weeks of a customer's steady weekly
// pattern with daily peaks (every flag there is a false positive), then
// sends ten times its normal Wednesday-afternoon volume: the detector must
// flag the burst within the short window and never the normal peaks.
func TestSpikeSyntheticSeries(t *testing.T) {
	params := SpikeParams{Factor: 5, Floor: 100, Baseline: 200, Alpha: 0.3}
	window := 10 * time.Minute
	learn := 4
	burstAt := t0.Add(time.Duration(learn)*7*24*time.Hour + 2*24*time.Hour + 14*time.Hour) // week 5, Wednesday 14:00
	normal, _ := hourlyPattern(time.Wednesday, 14)
	for _, k := range kinds() {
		t.Run(k.name, func(t *testing.T) {
			if k.name == "redis" && testing.Short() {
				t.Skip("40000 round trips")
			}
			clk := clock.NewFake(t0)
			b := k.mk(t, clk)
			rng := rand.New(rand.NewPCG(1, 2))
			// Weeks of normal traffic, then the rest of week 5 with a burst
			// of 9x extra (10x in all) for half an hour.
			times := series(rng, t0, learn+1, burstAt, 9*normal, 30*time.Minute)
			var falsePos []time.Time
			var firstFlag time.Time
			var peakCount int64
			for _, at := range times {
				if at.After(burstAt.Add(time.Hour)) {
					break
				}
				clk.Set(at)
				r, err := b.Run(context.Background(), "steady", ModeReserve, []Op{{Kind: KindSpike, Name: FindingSpike, Key: "spike", Period: window, N: 1, Spike: params}})
				if err != nil {
					t.Fatal(err)
				}
				o := r.Ops[0]
				if at.Before(burstAt) {
					peakCount = max(peakCount, o.Count)
					if o.Flagged {
						falsePos = append(falsePos, at)
					}
					continue
				}
				if o.Flagged && firstFlag.IsZero() {
					firstFlag = at
				}
			}
			if len(falsePos) > 0 {
				t.Errorf("%d normal messages flagged, first at %s (%s)", len(falsePos), falsePos[0], falsePos[0].Weekday())
			}
			if firstFlag.IsZero() {
				t.Fatal("the 10x burst was never flagged")
			}
			if d := firstFlag.Sub(burstAt); d > window {
				t.Errorf("burst flagged after %s, want within the %s window", d, window)
			}
			t.Logf("largest normal 10-minute count %d; burst flagged %s after it started", peakCount, firstFlag.Sub(burstAt).Round(time.Second))
		})
	}
}
