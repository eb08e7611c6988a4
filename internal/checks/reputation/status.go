package reputation

import (
	"sync"
	"time"
)

// The states of the delivery-log reader.
const (
	// StateStarting: nothing read or tried yet.
	StateStarting = "starting"
	// StateFollowing: the source is read.
	StateFollowing = "following"
	// StateRetrying: the source cannot be read; retried with back-off.
	StateRetrying = "retrying"
	// StateEnded: standard input ended (nothing more can come).
	StateEnded = "ended"
)

// ReaderStates lists the states.
var ReaderStates = []string{StateStarting, StateFollowing, StateRetrying, StateEnded}

// The ways a followed file is seen rotated.
const (
	RotationRename   = "rename"
	RotationTruncate = "truncate"
)

// FollowStatus is what the delivery-log reader is doing, for the metrics
// and /readyz. It is safe for concurrent use.
type FollowStatus struct {
	mu         sync.Mutex
	source     string
	state      string
	began      time.Time
	lastLine   time.Time
	caughtUp   time.Time // last time everything written had been read
	lagBytes   int64
	lagKnown   bool
	errKind    string
	errText    string
	errSince   time.Time
	errors     map[string]int64
	recoveries int64
	rotations  map[string]int64
}

// FollowSnapshot is a FollowStatus at one instant.
type FollowSnapshot struct {
	Source string `json:"source"`
	State  string `json:"state"`
	// LastLine is when the last line was read (nil: none yet).
	LastLine *time.Time `json:"last_line,omitempty"`
	// LagBytes is what is written and not read yet (nil: unknown, the
	// file cannot be looked at).
	LagBytes *int64 `json:"lag_bytes"`
	// LagSeconds is the time since the reader had last read everything
	// written (since start when it never had).
	LagSeconds float64 `json:"lag_seconds"`
	// Error is what keeps the reader from reading, while it lasts.
	Error      string           `json:"error,omitempty"`
	ErrorKind  string           `json:"error_kind,omitempty"`
	ErrorSince *time.Time       `json:"error_since,omitempty"`
	Errors     map[string]int64 `json:"errors,omitempty"`
	Recoveries int64            `json:"recoveries"`
	Rotations  map[string]int64 `json:"rotations,omitempty"`
}

func (s *FollowStatus) begin(source string, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.source, s.began, s.state = source, now, StateStarting
}

func (s *FollowStatus) line(now time.Time) {
	s.mu.Lock()
	s.lastLine = now
	s.mu.Unlock()
}

func (s *FollowStatus) fail(kind string, err error, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.errors == nil {
		s.errors = map[string]int64{}
	}
	s.errors[kind]++
	if s.state != StateRetrying {
		s.errSince = now
	}
	s.state, s.errKind, s.errText = StateRetrying, kind, err.Error()
}

func (s *FollowStatus) recover() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recoveries++
	s.state, s.errKind, s.errText = StateFollowing, "", ""
}

func (s *FollowStatus) rotated(how string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rotations == nil {
		s.rotations = map[string]int64{}
	}
	s.rotations[how]++
}

// setLag records the bytes left to read after a read; caughtUp: none.
func (s *FollowStatus) setLag(n int64, caughtUp bool, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state == StateStarting {
		s.state = StateFollowing
	}
	s.lagBytes, s.lagKnown = n, true
	if caughtUp {
		s.caughtUp = now
	}
}

func (s *FollowStatus) lagUnknown() {
	s.mu.Lock()
	s.lagKnown = false
	s.mu.Unlock()
}

// following marks a stream source (standard input) as read.
func (s *FollowStatus) following() {
	s.mu.Lock()
	s.state = StateFollowing
	s.mu.Unlock()
}

// ended marks a stream source that ended; err, if any, is why.
func (s *FollowStatus) ended(err error, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.state, s.errSince = StateEnded, now
	s.errKind, s.errText = "", "end of standard input"
	if err != nil {
		s.errKind, s.errText = errorKind(err), err.Error()
	}
}

// Snapshot returns the status at now.
func (s *FollowStatus) Snapshot(now time.Time) FollowSnapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := FollowSnapshot{Source: s.source, State: s.state, Error: s.errText, ErrorKind: s.errKind, Recoveries: s.recoveries}
	if out.State == "" {
		out.State = StateStarting
	}
	if !s.lastLine.IsZero() {
		t := s.lastLine
		out.LastLine = &t
	}
	if s.lagKnown {
		n := s.lagBytes
		out.LagBytes = &n
	}
	ref := s.caughtUp
	if ref.IsZero() {
		ref = s.began
	}
	if !ref.IsZero() && now.After(ref) {
		out.LagSeconds = now.Sub(ref).Seconds()
	}
	if s.errText != "" {
		t := s.errSince
		out.ErrorSince = &t
	}
	if len(s.errors) > 0 {
		out.Errors = make(map[string]int64, len(s.errors))
		for k, v := range s.errors {
			out.Errors[k] = v
		}
	}
	if len(s.rotations) > 0 {
		out.Rotations = make(map[string]int64, len(s.rotations))
		for k, v := range s.rotations {
			out.Rotations[k] = v
		}
	}
	return out
}

// Degraded says why the reader cannot be trusted to be up to date ("" when
// it can): it cannot read its source, its source ended, or it is more than
// maxLag behind.
func (f FollowSnapshot) Degraded(maxLag time.Duration) string {
	switch {
	case f.State == StateRetrying:
		return "delivery log unreadable (" + f.ErrorKind + "): " + f.Error
	case f.State == StateEnded:
		return "delivery log source ended: " + f.Error
	case maxLag > 0 && f.LagSeconds > maxLag.Seconds():
		return "delivery log reader behind by " + time.Duration(f.LagSeconds*float64(time.Second)).Round(time.Second).String()
	}
	return ""
}
