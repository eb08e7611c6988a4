package ratelimit

import "sort"

// A recipient's send times (KindRecipient) are kept in slots, so that the
// work and the state per message to one recipient are bounded by the
// window, not by the limit or the traffic: a customer allowed 100,000
// messages a day to one address (a ticket system, its own archive) costs
// the same per message as one allowed 20. Sends in the same minute share
// one slot; once a slot is an hour old, slots in the same ten minutes are
// merged. A slot keeps the time of its latest send and how many sends it
// holds, and counts in a window until that time leaves it: the count errs
// upwards only, by at most one slot's sends (a minute for the hour limit,
// ten minutes for the day limit, as a daily quota's buckets), so a limit is
// never exceeded in any window of its length. At most about 60 + 144 slots
// a day, 6 bytes each on Redis; a recipient who gets one message is one
// slot. run.lua and release.lua implement the same on Redis; this file is
// the reference.

// rcptSlot is one slot: T, the time of its latest send (ms since the
// epoch), and N, its sends.
type rcptSlot struct {
	T int64 `json:"t"`
	N int64 `json:"n"`
}

const (
	rcptFineMs     = 60_000    // sends in the same minute share a slot
	rcptCoarseMs   = 600_000   // ... in the same ten minutes once an hour old
	rcptCoarseAge  = 3_600_000 // the age at which slots are merged coarsely
	rcptMaxPerSlot = 65535     // a slot's count fits 16 bits on Redis
)

// rcptCount is the number of sends whose slot time is after since.
func rcptCount(slots []rcptSlot, since int64) int64 {
	var n int64
	for _, s := range slots {
		if s.T > since {
			n += s.N
		}
	}
	return n
}

// rcptFreeAfter is how long until need more sends have left the window
// (since = now - period): the oldest counted slots leave first.
func rcptFreeAfter(slots []rcptSlot, since, period, now, need int64) int64 {
	if need <= 0 {
		return 0
	}
	var acc int64
	for _, s := range slots {
		if s.T <= since {
			continue
		}
		if acc += s.N; acc >= need {
			return s.T + period - now
		}
	}
	return period
}

// rcptAdd records a send at now: slots at or before now-keep are dropped,
// the send joins the newest slot when it is of the same minute, and slots
// an hour old are merged by ten minutes. slots are sorted by T.
func rcptAdd(slots []rcptSlot, now, keep int64) []rcptSlot {
	out := slots[:0]
	for _, s := range slots {
		if s.T > now-keep {
			out = append(out, s)
		}
	}
	if k := len(out) - 1; k >= 0 && floorDiv(out[k].T, rcptFineMs) == floorDiv(now, rcptFineMs) && out[k].N < rcptMaxPerSlot {
		out[k].T = max(out[k].T, now)
		out[k].N++
	} else {
		out = append(out, rcptSlot{T: now, N: 1})
	}
	return rcptCompact(out, now)
}

// rcptCompact merges neighbouring slots that are both an hour old and of
// the same ten minutes into the later one.
func rcptCompact(slots []rcptSlot, now int64) []rcptSlot {
	old := now - rcptCoarseAge
	out := slots[:0]
	for _, s := range slots {
		if k := len(out) - 1; k >= 0 && s.T <= old && out[k].T <= old &&
			floorDiv(out[k].T, rcptCoarseMs) == floorDiv(s.T, rcptCoarseMs) && out[k].N+s.N <= rcptMaxPerSlot {
			out[k] = rcptSlot{T: s.T, N: out[k].N + s.N}
			continue
		}
		out = append(out, s)
	}
	return out
}

// rcptRemove takes back one send made at `at`: it is in the first slot
// whose time is not before it (a send only ever joins a slot at or after
// its own time, and merging keeps the order). It reports whether a send
// was taken.
func rcptRemove(slots []rcptSlot, at int64) ([]rcptSlot, bool) {
	i := sort.Search(len(slots), func(i int) bool { return slots[i].T >= at })
	if i == len(slots) {
		return slots, false
	}
	if slots[i].N--; slots[i].N <= 0 {
		slots = append(slots[:i], slots[i+1:]...)
	}
	return slots, true
}
