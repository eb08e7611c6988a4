package ratelimit

import (
	"sync"
	"time"
)

// lookFresh is how long the use of a customer's message counters, as the
// store last reported it to this gateway, answers the MAIL FROM look.
const lookFresh = time.Second

// lookCache spares the store a round trip at MAIL FROM. The look there is
// only an early answer (the message counters are reserved, and the
// decision that counts is made, at end of message), so a use the store
// reported under a second ago is good enough to let a message start: when
// it shows room for every limit, the look passes without the store; when
// it does not, or is older, the store is asked, so a refusal at MAIL FROM
// always comes from the store with its exact retry time. Use only grows
// through reservations, and this gateway records its own; what another
// MTA reserved in the last second is caught at end of message.
type lookCache struct {
	now func() time.Time
	mu  sync.Mutex
	m   map[string]lookSnap
}

// lookSnap is one customer's message counters' use, by limit name.
type lookSnap struct {
	at   time.Time
	used map[string]int64
}

func newLookCache(now func() time.Time) *lookCache {
	return &lookCache{now: now, m: map[string]lookSnap{}}
}

// allows reports whether a fresh snapshot shows room for every op.
func (l *lookCache) allows(customer string, ops []Op) bool {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	s, ok := l.m[customer]
	if !ok || now.Before(s.at) || now.Sub(s.at) >= lookFresh {
		return false
	}
	for _, op := range ops {
		u, ok := s.used[lookID(op)]
		if !ok || u+op.N > op.Limit {
			return false
		}
	}
	return true
}

// record keeps the use r reports for ops (applied: r's reservation was
// made, so the use includes it). It reuses the customer's map: this runs
// for every message.
func (l *lookCache) record(customer string, ops []Op, r Result, applied bool) {
	if len(r.Ops) != len(ops) {
		return
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.m[customer]
	if s.used == nil {
		s.used = make(map[string]int64, len(ops))
	} else {
		clear(s.used)
	}
	for i, op := range ops {
		if op.Kind != KindRate && op.Kind != KindWindow {
			continue
		}
		u := r.Ops[i].Used
		if applied {
			u += op.N
		}
		s.used[lookID(op)] = u
	}
	s.at = now
	l.m[customer] = s
}

// lookID names an op's counter among the customer's (its logins' keys are
// their own; a reseller-wide counter may share its key's name).
func lookID(op Op) string {
	if op.Scope == ScopeReseller {
		return "@r:" + op.Key
	}
	return op.Key
}
