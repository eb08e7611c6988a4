package config

import (
	"net"
	"net/url"
	"strings"
	"time"
)

// Defaults of the optout and bulk sections.
const (
	// DefaultUnsubscribeListen keeps the public unsubscribe endpoint on
	// loopback until the provider puts a reverse proxy (TLS) in front of it.
	DefaultUnsubscribeListen = "127.0.0.1:8893"
	// DefaultEscalationThreshold is how many sends to opted-out recipients
	// within the window flag a customer.
	DefaultEscalationThreshold = 10
	// DefaultEscalationWindow is the escalation counting window.
	DefaultEscalationWindow = 24 * time.Hour
	// DefaultComplaintWindow is the rolling window of the complaint rate.
	DefaultComplaintWindow = 7 * 24 * time.Hour
	// DefaultComplaintWarn and DefaultComplaintAct are the complaint-rate
	// thresholds large mailbox providers publish (0.1% and 0.3%).
	DefaultComplaintWarn = 0.001
	DefaultComplaintAct  = 0.003
	// DefaultComplaintMinDelivered is the volume below which no rate is
	// judged: one complaint among ten messages says nothing.
	DefaultComplaintMinDelivered = 1000
	// DefaultFingerprintRecipients is how many recipients of one body
	// within the window make a message bulk.
	DefaultFingerprintRecipients = 200
	// DefaultFingerprintWindow is the window of the fingerprint count.
	DefaultFingerprintWindow = 24 * time.Hour
	// DefaultFeedbackSenderID is the last field of the Feedback-ID the
	// gateway stamps.
	DefaultFeedbackSenderID = "aupguard"
)

// OptOutConfig configures suppression lists (check optout_suppression),
// the one-click unsubscribe endpoint, complaint (ARF) ingestion, the
// identifying headers the gateway stamps (check feedback_stamp) and the
// escalation of customers who keep sending to opted-out recipients.
type OptOutConfig struct {
	// KeepPlain stores the plain address next to its keyed hash, so that
	// lists can be exported in clear. Off by default: a leaked store then
	// does not leak anyone's mailing list.
	KeepPlain bool `yaml:"keep_plain"`
	// CaseSensitiveLocal keeps the local part's case when normalising an
	// address (RFC 5321 §2.4 allows case-sensitive local parts; nearly no
	// one uses them, so by default the local part is lower-cased).
	CaseSensitiveLocal bool `yaml:"case_sensitive_local"`
	// FoldSubaddress folds "user+tag" into "user", so an opt-out of one
	// sub-address covers them all. On by default (nil), like the
	// per-recipient limits: one default for both, on the side of the
	// person who opted out (docs/optout.md).
	FoldSubaddress *bool `yaml:"fold_subaddress"`
	// Unsubscribe is the RFC 8058 one-click endpoint.
	Unsubscribe UnsubscribeConfig `yaml:"unsubscribe"`
	// Feedback configures the identifying headers stamped on outgoing mail
	// and read back from complaints.
	Feedback FeedbackConfig `yaml:"feedback"`
	// Escalation flags customers who keep sending to opted-out recipients.
	Escalation EscalationConfig `yaml:"escalation"`
	// Complaints configures the complaint rate.
	Complaints ComplaintsConfig `yaml:"complaints"`
}

// UnsubscribeConfig is the public one-click unsubscribe endpoint.
type UnsubscribeConfig struct {
	// Listen is HOST:PORT of the endpoint's HTTP listener; "off" disables it.
	Listen string `yaml:"listen"`
	// BaseURL is the public https URL the token is appended to, ending
	// in "/u/" (e.g. https://unsubscribe.provider.example/u/). Required for
	// the gateway to add List-Unsubscribe headers.
	BaseURL string `yaml:"base_url"`
	// TokenTTL makes links expire; 0 (default) never expires them.
	TokenTTL time.Duration `yaml:"token_ttl"`
}

// FeedbackConfig is the identifying headers the gateway stamps on outgoing
// mail, so a complaint can be traced back to the customer.
type FeedbackConfig struct {
	// SenderID is the last field of the Feedback-ID header
	// ("CUSTOMER:SENDERID"), the provider's constant identifier.
	SenderID string `yaml:"sender_id"`
	// FeedbackID adds a Feedback-ID header when the message has none
	// (default true).
	FeedbackID *bool `yaml:"feedback_id"`
}

// EscalationConfig flags a customer who keeps sending to recipients who
// opted out. What a flag does to the customer's bulk mail is the action of
// finding customer_flagged of check bulk_mail (default: report only).
type EscalationConfig struct {
	// Threshold is the number of refused sends to opted-out recipients
	// within Window that flags the customer; 0 never flags.
	Threshold int           `yaml:"threshold"`
	Window    time.Duration `yaml:"window"`
}

// ComplaintsConfig is the complaint rate: complaints / delivered
// recipients over a rolling window.
type ComplaintsConfig struct {
	Window time.Duration `yaml:"window"`
	// Warn and Act are rates (0.001 = 0.1%): above Warn the bulk_mail check
	// reports complaint_rate_warn, above Act complaint_rate_high.
	Warn float64 `yaml:"warn"`
	Act  float64 `yaml:"act"`
	// MinDelivered is the delivered count below which no rate is judged.
	MinDelivered int `yaml:"min_delivered"`
}

// BulkConfig configures the bulk-mail rules (check bulk_mail): what makes a
// message bulk, and what bulk mail must carry.
type BulkConfig struct {
	// FingerprintRecipients: a body sent to more than this many recipients
	// within FingerprintWindow is bulk; -1 turns fingerprinting off.
	FingerprintRecipients int           `yaml:"fingerprint_recipients"`
	FingerprintWindow     time.Duration `yaml:"fingerprint_window"`
	// Unsubscribe is the provider-wide default of customers[].unsubscribe.
	Unsubscribe string `yaml:"unsubscribe"`
}

// CustomerOptOut is a customer's own opt-out and bulk settings.
type CustomerOptOut struct {
	// Unsubscribe says what happens to bulk mail without one-click
	// unsubscribe headers: "require" (refuse it) or "add" (the gateway adds
	// List-Unsubscribe and List-Unsubscribe-Post pointing at its own
	// endpoint). Empty inherits bulk.unsubscribe.
	Unsubscribe string `yaml:"unsubscribe"`
	// FingerprintRecipients overrides bulk.fingerprint_recipients (nil inherits).
	FingerprintRecipients *int `yaml:"fingerprint_recipients"`
}

func (o *OptOutConfig) defaults() {
	if o.Unsubscribe.Listen == "" {
		o.Unsubscribe.Listen = DefaultUnsubscribeListen
	}
	if o.Feedback.SenderID == "" {
		o.Feedback.SenderID = DefaultFeedbackSenderID
	}
	if o.Feedback.FeedbackID == nil {
		t := true
		o.Feedback.FeedbackID = &t
	}
	if o.Escalation.Threshold == 0 {
		o.Escalation.Threshold = DefaultEscalationThreshold
	}
	if o.Escalation.Window == 0 {
		o.Escalation.Window = DefaultEscalationWindow
	}
	c := &o.Complaints
	if c.Window == 0 {
		c.Window = DefaultComplaintWindow
	}
	if c.Warn == 0 {
		c.Warn = DefaultComplaintWarn
	}
	if c.Act == 0 {
		c.Act = DefaultComplaintAct
	}
	if c.MinDelivered == 0 {
		c.MinDelivered = DefaultComplaintMinDelivered
	}
}

func (o *OptOutConfig) validate(v *validator) {
	u := o.Unsubscribe
	if u.Listen != "off" {
		if _, _, err := net.SplitHostPort(u.Listen); err != nil {
			v.errf("optout.unsubscribe.listen", "want HOST:PORT or off, got %q", u.Listen)
		}
	}
	if u.BaseURL != "" {
		p, err := url.Parse(u.BaseURL)
		switch {
		case err != nil:
			v.errf("optout.unsubscribe.base_url", "bad URL %q: %v", u.BaseURL, err)
		case p.Scheme != "https":
			// RFC 8058 §3.1: the one-click URI must be https.
			v.errf("optout.unsubscribe.base_url", "must be an https URL (RFC 8058 §3.1), got %q", u.BaseURL)
		case p.Host == "" || p.RawQuery != "" || p.Fragment != "":
			v.errf("optout.unsubscribe.base_url", "want https://HOST/PATH/ without query or fragment, got %q", u.BaseURL)
		case !strings.HasSuffix(p.Path, "/u/"):
			v.errf("optout.unsubscribe.base_url", "must end in /u/ (the endpoint serves /u/TOKEN), got %q", u.BaseURL)
		}
	}
	v.duration("optout.unsubscribe.token_ttl", u.TokenTTL)
	if s := o.Feedback.SenderID; strings.ContainsAny(s, ": \t\r\n;") {
		v.errf("optout.feedback.sender_id", "must not contain ':', ';' or white space, got %q", s)
	}
	v.positive("optout.escalation.threshold", o.Escalation.Threshold)
	if o.Escalation.Window <= 0 {
		v.errf("optout.escalation.window", "must be positive, got %s", o.Escalation.Window)
	}
	c := o.Complaints
	if c.Window < time.Hour {
		v.errf("optout.complaints.window", "must be at least 1h, got %s", c.Window)
	}
	if c.Warn <= 0 || c.Warn >= 1 {
		v.errf("optout.complaints.warn", "want a rate between 0 and 1 (0.001 = 0.1%%), got %v", c.Warn)
	}
	if c.Act <= 0 || c.Act >= 1 {
		v.errf("optout.complaints.act", "want a rate between 0 and 1 (0.003 = 0.3%%), got %v", c.Act)
	}
	if c.Act < c.Warn {
		v.errf("optout.complaints.act", "act (%v) is below warn (%v)", c.Act, c.Warn)
	}
	v.positive("optout.complaints.min_delivered", c.MinDelivered)
}

func (b *BulkConfig) defaults() {
	if b.FingerprintRecipients == 0 {
		b.FingerprintRecipients = DefaultFingerprintRecipients
	}
	if b.FingerprintWindow == 0 {
		b.FingerprintWindow = DefaultFingerprintWindow
	}
	if b.Unsubscribe == "" {
		b.Unsubscribe = "require"
	}
}

func (b *BulkConfig) validate(v *validator) {
	if b.FingerprintRecipients < -1 {
		v.errf("bulk.fingerprint_recipients", "want a count, or -1 to turn fingerprinting off, got %d", b.FingerprintRecipients)
	}
	if b.FingerprintWindow <= 0 {
		v.errf("bulk.fingerprint_window", "must be positive, got %s", b.FingerprintWindow)
	}
	validUnsubscribe(v, "bulk.unsubscribe", b.Unsubscribe)
	if b.Unsubscribe == "add" && v.cfg.OptOut.Unsubscribe.BaseURL == "" {
		v.errf("bulk.unsubscribe", "add needs optout.unsubscribe.base_url")
	}
}

func (c *CustomerOptOut) validate(v *validator, p string) {
	if c.Unsubscribe != "" {
		validUnsubscribe(v, p+".unsubscribe", c.Unsubscribe)
		if c.Unsubscribe == "add" && v.cfg.OptOut.Unsubscribe.BaseURL == "" {
			v.errf(p+".unsubscribe", "add needs optout.unsubscribe.base_url")
		}
	}
	if c.FingerprintRecipients != nil && *c.FingerprintRecipients < -1 {
		v.errf(p+".fingerprint_recipients", "want a count, or -1 to turn fingerprinting off, got %d", *c.FingerprintRecipients)
	}
}

func validUnsubscribe(v *validator, p, s string) {
	switch s {
	case "require", "add":
	default:
		v.errf(p, "want require or add, got %q", s)
	}
}

// UnsubscribeMode returns the customer's effective unsubscribe mode.
func (c *Config) UnsubscribeMode(cu *Customer) string {
	if cu != nil && cu.Unsubscribe != "" {
		return cu.Unsubscribe
	}
	return c.Bulk.Unsubscribe
}

// FoldsSubaddress reports whether "user+tag" counts as "user" for
// opt-outs (default true).
func (o *OptOutConfig) FoldsSubaddress() bool { return o.FoldSubaddress == nil || *o.FoldSubaddress }
