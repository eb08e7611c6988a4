package ratelimit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/periodic"
)

// memory is the in-process backend (one MTA): the reference semantics that
// run.lua and release.lua reproduce on Redis. Time comes from the injected
// clock. When the store has a path, the counters and spike baselines are
// written to it (snapshot.go) every SnapshotInterval when they changed, and
// at Close, and read back at start, so that neither a restart nor a crash
// hands every customer a fresh daily quota or forgets weeks of baseline.
type memory struct {
	mu    sync.Mutex
	clk   clock.Clock
	file  string
	keys  map[string]*memKey
	dirty bool // changed since the last snapshot

	snapshots *periodic.Loop // the snapshot loop (snapshot.go), ended by Close
}

// memKey is one counter; its fields mirror the Redis types used by the
// scripts (string, hash, sorted set).
type memKey struct {
	// Expire is the expiry time in ms since the epoch (0: none), as PEXPIRE.
	Expire  int64              `json:"x,omitempty"`
	TAT     float64            `json:"t,omitempty"`
	Buckets map[int64]int64    `json:"b,omitempty"`
	Slots   []rcptSlot         `json:"r,omitempty"` // a recipient's sends (recipient.go)
	Hash    map[string]float64 `json:"h,omitempty"`
	// Z is the send times of a snapshot written before the slots (one per
	// send, by reservation); it is read once, into Slots.
	Z map[string]int64 `json:"z,omitempty"`
}

// stateFile is the memory backend's file under store.path.
const stateFile = "ratelimit.json"

func newMemory(clk clock.Clock, dir string) (*memory, error) {
	if clk == nil {
		clk = clock.System{}
	}
	m := &memory{clk: clk, keys: map[string]*memKey{}}
	if dir == "" {
		return m, nil
	}
	m.file = filepath.Join(dir, stateFile)
	b, err := os.ReadFile(m.file)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("ratelimit: %w", err)
	default:
		if err := json.Unmarshal(b, &m.keys); err != nil {
			return nil, fmt.Errorf("ratelimit: %s: %w", m.file, err)
		}
		for _, k := range m.keys {
			k.slotsFromTimes()
		}
	}
	return m, nil
}

// slotsFromTimes turns an older snapshot's send times into slots, one send
// each (merged at the next send, as any slots).
func (k *memKey) slotsFromTimes() {
	if len(k.Z) == 0 {
		return
	}
	for _, t := range k.Z {
		k.Slots = append(k.Slots, rcptSlot{T: t, N: 1})
	}
	sort.Slice(k.Slots, func(a, b int) bool { return k.Slots[a].T < k.Slots[b].T })
	k.Z = nil
}

// Close stops the periodic snapshots and writes the counters a last time.
func (m *memory) Close() error {
	if m.file == "" {
		return nil
	}
	m.stopSnapshots()
	return m.snapshot()
}

// get returns a live key, or nil; expired keys are dropped as Redis does.
func (m *memory) get(k string, now int64) *memKey {
	v := m.keys[k]
	if v != nil && v.Expire != 0 && v.Expire <= now {
		delete(m.keys, k)
		return nil
	}
	return v
}

func (m *memory) getOrNew(k string, now int64) *memKey {
	v := m.get(k, now)
	if v == nil {
		v = &memKey{}
		m.keys[k] = v
	}
	return v
}

// expireSome drops up to 32 expired keys, sampled in Go's random map
// order (Redis's active expiry does the same), so memory stays bounded
// without a sweeper goroutine.
func (m *memory) expireSome(now int64) {
	n := 0
	for k, v := range m.keys {
		if v.Expire != 0 && v.Expire <= now {
			delete(m.keys, k)
		}
		if n++; n >= 32 {
			return
		}
	}
}

func memName(customer, key string) string { return customer + "\x00" + key }

// memOpName is the counter of op: among the customer's, or the reseller's
// for a reseller-wide op ("@r:" cannot start a customer id).
func memOpName(customer string, op Op) string {
	if op.Scope == ScopeReseller {
		return memName("@r:"+op.Owner, op.Key)
	}
	return memName(customer, op.Key)
}

// round3 keeps three decimals, as the scripts' %.3f.
func round3(x float64) float64 {
	v, _ := strconv.ParseFloat(strconv.FormatFloat(x, 'f', 3, 64), 64)
	return v
}

const eps = 0.5 // half a millisecond of float slack, as run.lua

// Run implements Backend.
func (m *memory) Run(ctx context.Context, customer string, mode Mode, ops []Op) (Result, error) {
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.dirty = true
	nowT := m.clk.Now()
	now := nowT.UnixMilli()
	m.expireSome(now)
	res := Result{Allowed: true, Binding: -1, Now: time.UnixMilli(now), Ops: make([]OpResult, len(ops))}
	aux := make([]float64, len(ops))
	var retry int64
	for i, op := range ops {
		k := memOpName(customer, op)
		ok, r := true, int64(0)
		switch op.Kind {
		case KindRate:
			ok, r, res.Ops[i], aux[i] = m.rateEval(k, op, now)
		case KindWindow:
			ok, r, res.Ops[i] = m.windowEval(k, op, now)
		case KindRecipient:
			ok, r, res.Ops[i] = m.recipientEval(k, op, now)
		case KindSpike:
			if mode == ModeUsage {
				res.Ops[i] = m.spikeRun(customer, op, now, false)
			}
		default:
			return Result{}, fmt.Errorf("ratelimit: unknown op kind %q", op.Kind)
		}
		if !ok {
			res.Allowed = false
			if res.Binding < 0 || r > retry {
				res.Binding, retry = i, r
			}
		}
	}
	res.Retry = time.Duration(retry) * time.Millisecond
	if mode == ModeForce || (mode == ModeReserve && res.Allowed) {
		var sent map[string]bool // recipients counted: the hour and day limits share one send
		for i, op := range ops {
			k := memOpName(customer, op)
			switch op.Kind {
			case KindRate:
				v := round3(aux[i])
				e := m.getOrNew(k, now)
				e.TAT = v
				e.Expire = now + max(1, int64(math.Ceil(v-float64(now)))+1)
			case KindWindow:
				e := m.getOrNew(k, now)
				if e.Buckets == nil {
					e.Buckets = map[int64]int64{}
				}
				b := bucketMs(op.Period)
				lo := floorDiv(now-ms(op.Period), b)
				for j := range e.Buckets {
					if j < lo {
						delete(e.Buckets, j)
					}
				}
				e.Buckets[floorDiv(now, b)] += op.N
				e.Expire = now + ms(op.Period) + 2*b
			case KindRecipient:
				if sent[k] {
					continue
				}
				if sent == nil {
					sent = map[string]bool{}
				}
				sent[k] = true
				e := m.getOrNew(k, now)
				e.Slots = rcptAdd(e.Slots, now, ms(op.Keep))
				e.Expire = now + ms(op.Keep)
			case KindSpike:
				res.Ops[i] = m.spikeRun(customer, op, now, true)
			}
		}
	}
	return res, nil
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

func ceilMs(x float64) int64 { return int64(math.Ceil(x)) }

func (m *memory) rateEval(k string, op Op, now int64) (bool, int64, OpResult, float64) {
	L, P, n := float64(op.Limit), float64(ms(op.Period)), float64(op.N)
	T := P / L
	tat := 0.0
	if e := m.get(k, now); e != nil {
		tat = e.TAT
	}
	fnow := float64(now)
	if tat < fnow {
		tat = fnow
	}
	nw := tat + n*T
	ok := nw-fnow <= P+eps
	var retry int64
	if !ok {
		retry = ceilMs(nw - P - fnow)
	}
	used := int64(math.Ceil((tat-fnow)/T - 1e-9))
	var next int64
	if float64(used) >= L {
		next = ceilMs(tat + T - P - fnow)
	}
	return ok, retry, OpResult{Used: used, Reset: msDur(ceilMs(tat - fnow)), Next: msDur(next)}, nw
}

func msDur(n int64) time.Duration { return time.Duration(n) * time.Millisecond }

func (m *memory) windowEval(k string, op Op, now int64) (bool, int64, OpResult) {
	B, P := bucketMs(op.Period), ms(op.Period)
	lo := floorDiv(now-P, B)
	var idx []int64
	cnt := map[int64]int64{}
	var sum int64
	if e := m.get(k, now); e != nil {
		for j, c := range e.Buckets {
			if j >= lo && c > 0 {
				idx = append(idx, j)
				cnt[j] = c
				sum += c
			}
		}
	}
	sort.Slice(idx, func(a, b int) bool { return idx[a] < idx[b] })
	freeAfter := func(need int64) int64 {
		if need <= 0 {
			return 0
		}
		var acc int64
		for _, j := range idx {
			acc += cnt[j]
			if acc >= need {
				return (j+1)*B + P - now
			}
		}
		return P
	}
	ok := sum+op.N <= op.Limit
	var retry int64
	if !ok {
		retry = freeAfter(sum + op.N - op.Limit)
	}
	var reset int64
	if len(idx) > 0 {
		reset = (idx[len(idx)-1]+1)*B + P - now
	}
	return ok, retry, OpResult{Used: sum, Reset: msDur(reset), Next: msDur(freeAfter(sum + 1 - op.Limit)), Bucket: floorDiv(now, B)}
}

// recipientEval counts the recipient's sends in the window (recipient.go).
// Bucket is the reservation's time, by which Release finds its slot.
func (m *memory) recipientEval(k string, op Op, now int64) (bool, int64, OpResult) {
	P := ms(op.Period)
	var slots []rcptSlot
	if e := m.get(k, now); e != nil {
		slots = e.Slots
	}
	count := rcptCount(slots, now-P)
	ok := count+1 <= op.Limit
	var retry int64
	if !ok {
		retry = rcptFreeAfter(slots, now-P, P, now, count+1-op.Limit)
	}
	return ok, retry, OpResult{Used: count, Next: msDur(retry), Bucket: now}
}

var minuteField = regexp.MustCompile(`^m(\d+)$`)

// spikeRun is run.lua's spike_run (the method: doc.go, "Spike detection").
func (m *memory) spikeRun(customer string, op Op, now int64, write bool) OpResult {
	sp := op.Spike
	factor, W, n := sp.Factor, ms(op.Period), op.N
	floor, dflt, alpha := float64(sp.Floor), float64(sp.Baseline), sp.Alpha
	baseK, winK := memName(customer, op.Key+":base"), memName(customer, op.Key+":win")
	hour, minute, wmin := floorDiv(now, hourMs), floorDiv(now, minuteMs), W/minuteMs
	var f map[string]float64
	if e := m.get(winK, now); e != nil {
		f = e.Hash
	}
	h0, haveH := f["h"]
	c0 := f["c"]
	clipFloor := floor * 60 / float64(wmin)
	if write && haveH && int64(h0) < hour {
		if hour-int64(h0) > 4*168 {
			delete(m.keys, baseK)
		} else {
			be := m.getOrNew(baseK, now)
			if be.Hash == nil {
				be.Hash = map[string]float64{}
			}
			for x := int64(h0); x < hour; x++ {
				s := strconv.FormatInt(slotOf(x), 10)
				old, ok := be.Hash[s]
				if !ok {
					old = dflt
				}
				cnt := 0.0
				if x == int64(h0) {
					cnt = c0
				}
				if clip := math.Max(factor*old, clipFloor); cnt > clip {
					cnt = clip
				}
				be.Hash[s] = round3((1-alpha)*old + alpha*cnt)
			}
		}
		if be := m.get(baseK, now); be != nil {
			be.Expire = now + 35*24*hourMs
		}
	}
	count := n
	var stale []string
	for k, v := range f {
		if mm := minuteField.FindStringSubmatch(k); mm != nil {
			j, _ := strconv.ParseInt(mm[1], 10, 64)
			if j > minute-wmin {
				count += int64(v)
			} else {
				stale = append(stale, k)
			}
		}
	}
	s := slotOf(hour)
	var bh map[string]float64
	if be := m.get(baseK, now); be != nil {
		bh = be.Hash
	}
	baseline := 0.0
	for _, x := range []int64{(s + 167) % 168, s, (s + 1) % 168} {
		v, ok := bh[strconv.FormatInt(x, 10)]
		if !ok {
			v = dflt
		}
		baseline = math.Max(baseline, v)
	}
	threshold := math.Max(floor, factor*baseline*float64(wmin)/60)
	if write {
		we := m.getOrNew(winK, now)
		if we.Hash == nil {
			we.Hash = map[string]float64{}
		}
		for _, k := range stale {
			delete(we.Hash, k)
		}
		if !haveH || int64(h0) < hour {
			we.Hash["h"], we.Hash["c"] = float64(hour), float64(n)
		} else {
			we.Hash["c"] += float64(n)
		}
		we.Hash["m"+strconv.FormatInt(minute, 10)] += float64(n)
		we.Expire = now + 8*24*hourMs
	}
	return OpResult{Flagged: float64(count) > threshold, Count: count, Threshold: round3(threshold), Baseline: round3(baseline)}
}

const (
	hourMs   = int64(time.Hour / time.Millisecond)
	minuteMs = int64(time.Minute / time.Millisecond)
)

// slotOf is the hour of the week of an hour since the epoch, 0 being
// Monday 00h UTC (the epoch was a Thursday, 72 hours after a Monday).
func slotOf(hour int64) int64 { return (hour + 72) % 168 }

// Release implements Backend.
func (m *memory) Release(ctx context.Context, customer string, ops []Op) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.dirty = true
	now := m.clk.Now().UnixMilli()
	var taken map[string]bool // recipient sends given back (hour and day share one)
	for _, op := range ops {
		k := memOpName(customer, op)
		e := m.get(k, now)
		if e == nil {
			continue
		}
		switch op.Kind {
		case KindRate:
			nw := round3(e.TAT - float64(op.N)*float64(ms(op.Period))/float64(op.Limit))
			if nw <= float64(now) {
				delete(m.keys, k)
			} else {
				e.TAT = nw
				e.Expire = now + max(1, int64(math.Ceil(nw-float64(now)))+1)
			}
		case KindWindow:
			if c, ok := e.Buckets[op.Bucket]; ok {
				if c-op.N <= 0 {
					delete(e.Buckets, op.Bucket)
				} else {
					e.Buckets[op.Bucket] = c - op.N
				}
			}
		case KindRecipient:
			id := k + "\x00" + strconv.FormatInt(op.Bucket, 10)
			if !taken[id] {
				if taken == nil {
					taken = map[string]bool{}
				}
				taken[id] = true
				e.Slots, _ = rcptRemove(e.Slots, op.Bucket)
			}
		}
	}
	return nil
}
