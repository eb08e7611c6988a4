package connguard

import (
	"os"
	"slices"
	"syscall"
)

// NoFile is the process's descriptor limit (RLIMIT_NOFILE).
type NoFile struct {
	// SoftBefore is the soft limit RaiseNoFile found. The Go runtime
	// itself raises the soft limit to the hard one when the process starts
	// (Go 1.19 and later, on Linux), so it is usually Hard already.
	SoftBefore uint64
	// Soft and Hard are the limits in force afterwards.
	Soft, Hard uint64
}

// RaiseNoFile raises the soft descriptor limit to the hard limit.
func RaiseNoFile() (NoFile, error) {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return NoFile{}, err
	}
	nf := NoFile{SoftBefore: r.Cur, Soft: r.Cur, Hard: r.Max}
	if r.Cur >= r.Max {
		return nf, nil
	}
	r.Cur = r.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return nf, err
	}
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return nf, err
	}
	nf.Soft, nf.Hard = r.Cur, r.Max
	return nf, nil
}

// OpenDescriptors counts the descriptors the process has open (-1 when
// /proc/self/fd cannot be read).
func OpenDescriptors() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(ents) - 1 // the directory's own descriptor while reading it
}

// Headroom is the descriptors a budget keeps beyond those open at start
// and the store's pool: DNS sockets, the delivery log, snapshot files,
// outgoing report mail, a reload's reads.
const Headroom = 64

// Share is one capped listener of a budget; Fit lowers its Limits in
// place when the budget is short.
type Share struct {
	Name   string
	Limits *Limits
}

// Budget is how the descriptor limit is shared out at start.
type Budget struct {
	// Limit is the soft descriptor limit.
	Limit int
	// Reserve is kept for everything but the listeners' connections: the
	// descriptors open at start, the store's pool and Headroom.
	Reserve int
	// Milter is milter.max_connections: the MTA's connections come
	// first.
	Milter int
	// Available is what is left for the capped listeners' connections.
	Available int
	// Wanted is what their configured caps add up to.
	Wanted int
	// Lowered is true when the caps were lowered to fit Available.
	Lowered bool
	// Short is true when not even the reserve and the milter fit: the
	// limit is too low for milter.max_connections.
	Short bool
}

// Fit shares limit out: open descriptors, the store's pool (pool) and
// Headroom are reserved, then milter connections; the capped listeners
// share what is left. When their caps add up to more, what is left is
// shared fairly: a listener whose cap is below an equal share keeps it,
// the others get equal shares of the rest (at least 1; a per-client cap
// never above its listener's cap). So a flood of every HTTP listener at
// once still leaves the milter its descriptors, and a huge cap on one
// listener does not starve the other.
func Fit(limit, open, pool, milter int, shares []Share) Budget {
	if open < 0 {
		open = 0
	}
	b := Budget{Limit: limit, Reserve: open + pool + Headroom, Milter: milter}
	b.Available = limit - b.Reserve - milter
	for _, s := range shares {
		b.Wanted += s.Limits.Max
	}
	if b.Available < len(shares) {
		b.Short = true
	}
	if b.Wanted <= b.Available {
		return b
	}
	b.Lowered = true
	order := make([]int, len(shares))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return shares[a].Limits.Max - shares[b].Limits.Max })
	left := max(b.Available, 0)
	for k, i := range order {
		l := shares[i].Limits
		if fair := left / (len(order) - k); l.Max > fair {
			l.Max = fair
		}
		l.Max = max(l.Max, 1)
		left = max(left-l.Max, 0)
		if l.PerClient > l.Max {
			l.PerClient = l.Max
		}
	}
	return b
}
