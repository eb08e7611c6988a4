package ratelimit

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/aupguard/aupguard/internal/clock"
)

func TestRcptSlots(t *testing.T) {
	const m, h = int64(60_000), int64(3_600_000)
	day := 24 * h
	tests := []struct {
		name string
		in   []rcptSlot
		now  int64
		want []rcptSlot
	}{
		{"first send", nil, 10 * h, []rcptSlot{{10 * h, 1}}},
		{"same minute joins, time moves to the latest send", []rcptSlot{{10*h + 5_000, 1}}, 10*h + 50_000, []rcptSlot{{10*h + 50_000, 2}}},
		{"next minute is a new slot", []rcptSlot{{10*h + 50_000, 2}}, 10*h + m, []rcptSlot{{10*h + 50_000, 2}, {10*h + m, 1}}},
		{"a full slot starts another", []rcptSlot{{10 * h, rcptMaxPerSlot}}, 10*h + 1, []rcptSlot{{10 * h, rcptMaxPerSlot}, {10*h + 1, 1}}},
		{"slots past keep are dropped", []rcptSlot{{1 * h, 3}, {5 * h, 1}}, day + 2*h, []rcptSlot{{5 * h, 1}, {day + 2*h, 1}}},
		{"hour-old slots of the same ten minutes merge into the later",
			[]rcptSlot{{10 * h, 1}, {10*h + 4*m, 2}, {10*h + 9*m, 1}, {10*h + 10*m, 1}, {11*h + 30*m, 1}},
			12 * h,
			[]rcptSlot{{10*h + 9*m, 4}, {10*h + 10*m, 1}, {11*h + 30*m, 1}, {12 * h, 1}}},
		{"slots younger than an hour stay by the minute",
			[]rcptSlot{{10*h + 1*m, 1}, {10*h + 2*m, 1}},
			10*h + 30*m,
			[]rcptSlot{{10*h + 1*m, 1}, {10*h + 2*m, 1}, {10*h + 30*m, 1}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := rcptAdd(append([]rcptSlot(nil), tc.in...), tc.now, day)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("rcptAdd = %v, want %v", got, tc.want)
			}
		})
	}

	slots := []rcptSlot{{10 * h, 2}, {11 * h, 1}, {12 * h, 3}}
	for _, tc := range []struct {
		name        string
		since, need int64
		count, free int64
	}{
		{"all counted", 9 * h, 1, 6, 1 * h},
		{"the oldest slot left", 10 * h, 1, 4, 1 * h},
		{"need more than a slot", 9 * h, 3, 6, 2 * h},
		{"nothing needed", 9 * h, 0, 6, 0},
		{"more than counted: a whole period", 9 * h, 7, 6, day},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := tc.since + day
			if c := rcptCount(slots, tc.since); c != tc.count {
				t.Errorf("count = %d, want %d", c, tc.count)
			}
			if f := rcptFreeAfter(slots, tc.since, day, now, tc.need); f != tc.free {
				t.Errorf("free after = %d, want %d", f, tc.free)
			}
		})
	}

	for _, tc := range []struct {
		name string
		at   int64
		want []rcptSlot
		ok   bool
	}{
		{"from the slot at its time", 11 * h, []rcptSlot{{10 * h, 2}, {12 * h, 3}}, true},
		{"from the later slot it joined", 11*h - 30_000, []rcptSlot{{10 * h, 2}, {12 * h, 3}}, true},
		{"a slot keeps its other sends", 10 * h, []rcptSlot{{10 * h, 1}, {11 * h, 1}, {12 * h, 3}}, true},
		{"after every slot: nothing", 13 * h, []rcptSlot{{10 * h, 2}, {11 * h, 1}, {12 * h, 3}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := rcptRemove(append([]rcptSlot(nil), slots...), tc.at)
			if ok != tc.ok || !reflect.DeepEqual(got, tc.want) {
				t.Errorf("rcptRemove = %v %v, want %v %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

// TestRecipientStateBounded sends 5000 messages to one recipient, one every
// 20 seconds for 28 hours, under limits that never bind: the state kept for
// the recipient stays within the slots of a day (not one entry per send),
// and the counts err upwards by at most one slot.
func TestRecipientStateBounded(t *testing.T) {
	for _, k := range kinds() {
		t.Run(k.name, func(t *testing.T) {
			// Far ahead of the real clock: Redis expires keys by its own
			// (PEXPIREAT), which must not see this fake time as past.
			clk := clock.NewFake(t0.Add(20000*time.Hour + 7*time.Second))
			b := k.mk(t, clk)
			ctx := context.Background()
			ops := []Op{rcpt("prh", "inbox", 100_000_000, time.Hour), rcpt("prd", "inbox", 100_000_000, 24*time.Hour)}
			var last Result
			for i := 0; i < 5000; i++ {
				r, err := b.Run(ctx, "acme", ModeReserve, ops)
				if err != nil || !r.Allowed {
					t.Fatalf("send %d: %+v %v", i, r, err)
				}
				last = r
				clk.Advance(20 * time.Second)
			}
			// Before the last send: 179 sends in the hour, 4319 in the day.
			if u := last.Ops[0].Used; u < 179 || u > 179+3 {
				t.Errorf("hour count %d, want 179 and at most one minute (3 sends) more", u)
			}
			if u := last.Ops[1].Used; u < 4319 || u > 4319+30 {
				t.Errorf("day count %d, want 4319 and at most ten minutes (30 sends) more", u)
			}
			const maxSlots = 61 + 145
			switch b := b.(type) {
			case *memory:
				for key, e := range b.keys {
					if len(e.Slots) > maxSlots {
						t.Errorf("%q: %d slots, want at most %d", key, len(e.Slots), maxSlots)
					}
				}
			case *redisBackend:
				keys, err := b.h.Client.Keys(ctx, "t:*").Result()
				if err != nil {
					t.Fatal(err)
				}
				var longest int
				for _, key := range keys {
					vals, err := b.h.Client.HGetAll(ctx, key).Result()
					if err != nil {
						t.Fatal(err)
					}
					for _, v := range vals {
						longest = max(longest, len(v))
					}
				}
				if longest == 0 || longest > 1+6*maxSlots {
					t.Errorf("longest recipient value %d bytes, want 1..%d", longest, 1+6*maxSlots)
				}
			}
		})
	}
}

// TestRedisRecipientTimesBeforeSlots reads a recipient's value written
// before slots (4-byte times, one send each) and counts it.
func TestRedisRecipientTimesBeforeSlots(t *testing.T) {
	k := kinds()[1]
	clk := clock.NewFake(t0.Add(20000*time.Hour + 30*time.Minute))
	b := k.mk(t, clk).(*redisBackend)
	ctx := context.Background()
	op := rcpt("prh", "carol", 3, time.Hour)
	keep := ms(op.Keep)
	now := clk.Now().UnixMilli()
	g := now / keep
	field, shard := rcptField(op.Key)
	key := b.h.CustomerKey("acme", "rl", "rr", strconv.FormatInt(keep/60000, 10)+"m", strconv.FormatInt(g, 10), shard)
	var v []byte
	for _, ago := range []int64{20 * 60_000, 10 * 60_000} { // two sends, 20 and 10 minutes ago
		v = binary.BigEndian.AppendUint32(v, uint32(now-ago-(g-1)*keep))
	}
	if err := b.h.Client.HSet(ctx, key, field, string(v)).Err(); err != nil {
		t.Fatal(err)
	}
	r, err := b.Run(ctx, "acme", ModeReserve, []Op{op})
	if err != nil || !r.Allowed || r.Ops[0].Used != 2 {
		t.Fatalf("got %+v %v, want allowed with the 2 earlier sends counted", r, err)
	}
	r, err = b.Run(ctx, "acme", ModeReserve, []Op{op})
	if err != nil || r.Allowed || r.Retry.Round(time.Second) != 40*time.Minute {
		t.Fatalf("got %+v %v, want refused until the send of 20 minutes ago leaves (40m)", r, err)
	}
}

// TestMemoryRecipientTimesBeforeSlots reads a memory snapshot written before
// slots (send times by reservation) and counts its sends.
func TestMemoryRecipientTimesBeforeSlots(t *testing.T) {
	dir := t.TempDir()
	now := t0.Add(30 * time.Minute)
	at := func(d time.Duration) string { return strconv.FormatInt(now.Add(-d).UnixMilli(), 10) }
	snap := `{"acme\u0000r:carol":{"x":` + strconv.FormatInt(now.Add(time.Hour).UnixMilli(), 10) +
		`,"z":{"m1:1":` + at(20*time.Minute) + `,"m2:1":` + at(10*time.Minute) + `}}}`
	if err := os.WriteFile(filepath.Join(dir, stateFile), []byte(snap), 0o600); err != nil {
		t.Fatal(err)
	}
	m, err := newMemory(clock.NewFake(now), dir)
	if err != nil {
		t.Fatal(err)
	}
	r, err := m.Run(context.Background(), "acme", ModeCheck, []Op{rcpt("prh", "carol", 3, time.Hour)})
	if err != nil || r.Ops[0].Used != 2 {
		t.Fatalf("got %+v %v, want the 2 sends of the old snapshot counted", r, err)
	}
}
