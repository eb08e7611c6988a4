package metrics

import "github.com/aupguard/aupguard/internal/checks/optout"

// findingEscalation is the finding that flags a customer.
const findingEscalation = optout.FindingEscalation

// OptOut counts new opt-out entries (optout.Counters). An unknown source
// is counted as "other", so the label stays bounded.
func (m *Metrics) OptOut(source string, n int) {
	switch source {
	case optout.SourceUnsubscribe, optout.SourceComplaint, optout.SourceAPI, optout.SourceImport, optout.SourceCLI:
	default:
		source = "other"
	}
	m.optouts.WithLabelValues(source).Add(float64(n))
}

// initOptOuts exports every opt-out source at 0 from the start, so that
// an alert or a panel on an increase sees the first entry.
func (m *Metrics) initOptOuts() {
	for _, s := range []string{optout.SourceUnsubscribe, optout.SourceComplaint, optout.SourceAPI, optout.SourceImport, optout.SourceCLI} {
		m.optouts.WithLabelValues(s)
	}
}

// Complaint counts an ingested complaint report (optout.Counters).
func (m *Metrics) Complaint() { m.reports.Inc() }

// ComplaintRefused counts a refused complaint report (optout.RefusalCounter);
// an unknown reason is counted as "other", so the label stays bounded.
func (m *Metrics) ComplaintRefused(reason string) {
	switch reason {
	case optout.RefusedCapped, optout.RefusedNotRecipient, optout.RefusedSeveral, optout.RefusedUnbound, optout.RefusedExpired:
	default:
		reason = "other"
	}
	m.refusedComplaints.WithLabelValues(reason).Inc()
}

// BadToken counts an invalid unsubscribe token (optout.Counters).
func (m *Metrics) BadToken() { m.badTokens.Inc() }

var (
	_ optout.Counters       = (*Metrics)(nil)
	_ optout.RefusalCounter = (*Metrics)(nil)
)
