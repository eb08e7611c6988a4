package optout

// Counters receive what the opt-out service records, for /metrics
// (*metrics.Metrics). Sources are the bounded set of Source* constants.
type Counters interface {
	// OptOut counts n new entries recorded from source.
	OptOut(source string, n int)
	// Complaint counts one complaint report ingested.
	Complaint()
	// BadToken counts one invalid or expired unsubscribe token presented.
	BadToken()
}

func (s *Service) countOptOut(source string, n int) {
	if s.Counters != nil && n > 0 {
		s.Counters.OptOut(source, n)
	}
}

// RefusalCounter is implemented by Counters that also count refused
// complaint reports by reason (the Refused* constants).
type RefusalCounter interface {
	ComplaintRefused(reason string)
}
