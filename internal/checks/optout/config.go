package optout

import (
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/aupguard/aupguard/internal/engine/config"
)

// Defaults of the optout: and bulk: sections.
const (
	// DefaultUnsubscribeListen keeps the public unsubscribe endpoint on
	// loopback until the provider puts a reverse proxy (TLS) in front of it.
	DefaultUnsubscribeListen = "127.0.0.1:8893"
	// DefaultUnsubscribeMaxConnections and
	// DefaultUnsubscribeMaxConnectionsPerClient cap the public endpoint's
	// connections: a click is one short request, so a client holding 32
	// at once is not a recipient clicking.
	DefaultUnsubscribeMaxConnections          = 1024
	DefaultUnsubscribeMaxConnectionsPerClient = 32
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
	// DefaultComplaintRecordTTL is how long a message's complaint binding
	// lasts: a multi-recipient message's recipient set, and the record
	// that a (message, recipient) complaint was counted. A stamp older
	// than this is not counted.
	DefaultComplaintRecordTTL = 7 * 24 * time.Hour
	// DefaultComplaintReporterCap is how many complaint reports one
	// reporter may send per hour; the rest are refused.
	DefaultComplaintReporterCap = 1000
	// DefaultFingerprintRecipients is how many recipients of one body
	// within the window make a message bulk.
	DefaultFingerprintRecipients = 200
	// DefaultFingerprintWindow is the window of the fingerprint count.
	DefaultFingerprintWindow = 24 * time.Hour
	// DefaultFeedbackSenderID is the last field of the Feedback-ID the
	// gateway stamps.
	DefaultFeedbackSenderID = "aupguard"
)

// Unsubscribe modes of bulk.unsubscribe and customers[].unsubscribe.
const (
	// UnsubscribeRequire refuses bulk mail without one-click unsubscribe
	// headers.
	UnsubscribeRequire = "require"
	// UnsubscribeAdd has the gateway add List-Unsubscribe and
	// List-Unsubscribe-Post pointing at its own endpoint.
	UnsubscribeAdd = "add"
)

// Config is the optout: section of the config, which this package owns:
// suppression lists (check optout_suppression), the one-click unsubscribe
// endpoint, complaint (ARF) ingestion, the identifying headers the gateway
// stamps (check feedback_stamp) and the escalation of customers who keep
// sending to opted-out recipients.
type Config struct {
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
	// MaxConnections caps the connections the endpoint holds at once and
	// MaxConnectionsPerClient those of one client address (an IPv4
	// address or an IPv6 /64); one over a cap is closed at once. Lowered
	// at start when the descriptor limit cannot hold them beside the
	// milter's connections.
	MaxConnections          int `yaml:"max_connections"`
	MaxConnectionsPerClient int `yaml:"max_connections_per_client"`
}

// Enabled reports whether the endpoint listens (Listen is not "off").
func (u UnsubscribeConfig) Enabled() bool { return u.Listen != "" && u.Listen != "off" }

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
	// RecordTTL is how long a stamped message can be complained about:
	// its recipient set (multi-recipient messages) and the records of the
	// complaints counted for it are kept this long.
	RecordTTL time.Duration `yaml:"record_ttl"`
	// ReporterCap is the number of complaint reports accepted per hour
	// from one reporter (the caller's -reporter / ?reporter=, else the
	// report's From domain).
	ReporterCap int `yaml:"reporter_cap"`
}

// BulkConfig is the bulk: section of the config, which this package owns:
// the bulk-mail rules (check bulk_mail), what makes a message bulk and what
// bulk mail must carry. Customers override FingerprintRecipients and
// Unsubscribe with their own keys (customers[].fingerprint_recipients,
// customers[].unsubscribe), validated by CustomerSection.
type BulkConfig struct {
	// FingerprintRecipients: a body sent to more than this many recipients
	// within FingerprintWindow is bulk; -1 turns fingerprinting off.
	FingerprintRecipients int           `yaml:"fingerprint_recipients"`
	FingerprintWindow     time.Duration `yaml:"fingerprint_window"`
	// Unsubscribe is the provider-wide default of customers[].unsubscribe:
	// UnsubscribeRequire or UnsubscribeAdd.
	Unsubscribe string `yaml:"unsubscribe"`
}

// Section is the optout: section, decoded and validated here.
var Section = config.SectionSpec{Key: "optout", Decode: decodeConfig}

// BulkSection is the bulk: section, decoded and validated here, with the
// customers' bulk keys (unsubscribe, fingerprint_recipients). It reads the
// optout: section (an "add" mode needs optout.unsubscribe.base_url), so it
// comes after Section in the family's list.
var BulkSection = config.SectionSpec{Key: "bulk", Decode: decodeBulk}

// CustomerSection is the family's part of a customer entry: its bulk keys
// (unsubscribe, fingerprint_recipients), validated when the customer is,
// and filed as the customer's CustomerBulk (over bulk:'s defaults) when it
// sets any; bulk_mail reads it from the identified customer.
var CustomerSection = config.CustomerSection{Family: "optout", Decode: decodeCustomer}

func decodeCustomer(s *config.Section, p string, c *config.Customer) any {
	checkCustomer(s, p, c)
	if c.Unsubscribe == "" && c.FingerprintRecipients == nil {
		return nil
	}
	b, _ := s.Config.Section(BulkSection.Key).(*BulkConfig)
	if b == nil {
		b = DefaultBulkConfig()
	}
	return customerBulk(b, c)
}

// DefaultConfig is the optout: section when the config leaves it out.
func DefaultConfig() *Config {
	t := true
	return &Config{
		Unsubscribe: UnsubscribeConfig{Listen: DefaultUnsubscribeListen, MaxConnections: DefaultUnsubscribeMaxConnections, MaxConnectionsPerClient: DefaultUnsubscribeMaxConnectionsPerClient},
		Feedback:    FeedbackConfig{SenderID: DefaultFeedbackSenderID, FeedbackID: &t},
		Escalation:  EscalationConfig{Threshold: DefaultEscalationThreshold, Window: DefaultEscalationWindow},
		Complaints: ComplaintsConfig{
			Window:       DefaultComplaintWindow,
			Warn:         DefaultComplaintWarn,
			Act:          DefaultComplaintAct,
			MinDelivered: DefaultComplaintMinDelivered,
			RecordTTL:    DefaultComplaintRecordTTL,
			ReporterCap:  DefaultComplaintReporterCap,
		},
	}
}

// DefaultBulkConfig is the bulk: section when the config leaves it out.
func DefaultBulkConfig() *BulkConfig {
	return &BulkConfig{
		FingerprintRecipients: DefaultFingerprintRecipients,
		FingerprintWindow:     DefaultFingerprintWindow,
		Unsubscribe:           UnsubscribeRequire,
	}
}

// FoldsSubaddress reports whether "user+tag" counts as "user" for
// opt-outs (default true).
func (o *Config) FoldsSubaddress() bool { return o.FoldSubaddress == nil || *o.FoldSubaddress }

// AddsFeedbackID reports whether feedback_stamp adds a Feedback-ID
// (default true).
func (o *Config) AddsFeedbackID() bool {
	return o.Feedback.FeedbackID == nil || *o.Feedback.FeedbackID
}

// UnsubscribeMode returns the customer's effective unsubscribe mode: its
// own, else bulk.unsubscribe.
func (b *BulkConfig) UnsubscribeMode(cu *config.Customer) string {
	if cu != nil && cu.Unsubscribe != "" {
		return cu.Unsubscribe
	}
	return b.Unsubscribe
}

// decodeConfig decodes the optout: section over its defaults and validates
// it. A key written as zero (threshold: 0, window: 0s) keeps the default,
// as it always has.
func decodeConfig(s *config.Section) any {
	o := DefaultConfig()
	s.Decode(o)
	if o.Unsubscribe.Listen == "" {
		o.Unsubscribe.Listen = DefaultUnsubscribeListen
	}
	if o.Unsubscribe.MaxConnections == 0 {
		o.Unsubscribe.MaxConnections = DefaultUnsubscribeMaxConnections
	}
	if o.Unsubscribe.MaxConnectionsPerClient == 0 {
		o.Unsubscribe.MaxConnectionsPerClient = DefaultUnsubscribeMaxConnectionsPerClient
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
	if c.RecordTTL == 0 {
		c.RecordTTL = DefaultComplaintRecordTTL
	}
	if c.ReporterCap == 0 {
		c.ReporterCap = DefaultComplaintReporterCap
	}

	u := o.Unsubscribe
	if u.Listen != "off" {
		if _, _, err := net.SplitHostPort(u.Listen); err != nil {
			s.Errorf("optout.unsubscribe.listen", "want HOST:PORT or off, got %q", u.Listen)
		}
	}
	if u.BaseURL != "" {
		p, err := url.Parse(u.BaseURL)
		switch {
		case err != nil:
			s.Errorf("optout.unsubscribe.base_url", "bad URL %q: %v", u.BaseURL, err)
		case p.Scheme != "https":
			// RFC 8058 §3.1: the one-click URI must be https.
			s.Errorf("optout.unsubscribe.base_url", "must be an https URL (RFC 8058 §3.1), got %q", u.BaseURL)
		case p.Host == "" || p.RawQuery != "" || p.Fragment != "":
			s.Errorf("optout.unsubscribe.base_url", "want https://HOST/PATH/ without query or fragment, got %q", u.BaseURL)
		case !strings.HasSuffix(p.Path, "/u/"):
			s.Errorf("optout.unsubscribe.base_url", "must end in /u/ (the endpoint serves /u/TOKEN), got %q", u.BaseURL)
		}
	}
	s.Duration("optout.unsubscribe.token_ttl", u.TokenTTL)
	s.Positive("optout.unsubscribe.max_connections", u.MaxConnections)
	s.Positive("optout.unsubscribe.max_connections_per_client", u.MaxConnectionsPerClient)
	if u.MaxConnectionsPerClient > u.MaxConnections && u.MaxConnections > 0 {
		s.Errorf("optout.unsubscribe.max_connections_per_client", "%d is above optout.unsubscribe.max_connections (%d)", u.MaxConnectionsPerClient, u.MaxConnections)
	}
	if id := o.Feedback.SenderID; strings.ContainsAny(id, ": \t\r\n;") {
		s.Errorf("optout.feedback.sender_id", "must not contain ':', ';' or white space, got %q", id)
	}
	s.Positive("optout.escalation.threshold", o.Escalation.Threshold)
	if o.Escalation.Window <= 0 {
		s.Errorf("optout.escalation.window", "must be positive, got %s", o.Escalation.Window)
	}
	if c.Window < time.Hour {
		s.Errorf("optout.complaints.window", "must be at least 1h, got %s", c.Window)
	}
	if c.Warn <= 0 || c.Warn >= 1 {
		s.Errorf("optout.complaints.warn", "want a rate between 0 and 1 (0.001 = 0.1%%), got %v", c.Warn)
	}
	if c.Act <= 0 || c.Act >= 1 {
		s.Errorf("optout.complaints.act", "want a rate between 0 and 1 (0.003 = 0.3%%), got %v", c.Act)
	}
	if c.Act < c.Warn {
		s.Errorf("optout.complaints.act", "act (%v) is below warn (%v)", c.Act, c.Warn)
	}
	s.Positive("optout.complaints.min_delivered", c.MinDelivered)
	if c.RecordTTL < time.Hour {
		s.Errorf("optout.complaints.record_ttl", "must be at least 1h, got %s", c.RecordTTL)
	}
	s.Positive("optout.complaints.reporter_cap", c.ReporterCap)
	return o
}

// decodeBulk decodes the bulk: section over its defaults and validates it.
func decodeBulk(s *config.Section) any {
	b := DefaultBulkConfig()
	s.Decode(b)
	if b.FingerprintRecipients == 0 {
		b.FingerprintRecipients = DefaultFingerprintRecipients
	}
	if b.FingerprintWindow == 0 {
		b.FingerprintWindow = DefaultFingerprintWindow
	}
	if b.Unsubscribe == "" {
		b.Unsubscribe = UnsubscribeRequire
	}
	if b.FingerprintRecipients < -1 {
		s.Errorf("bulk.fingerprint_recipients", "want a count, or -1 to turn fingerprinting off, got %d", b.FingerprintRecipients)
	}
	if b.FingerprintWindow <= 0 {
		s.Errorf("bulk.fingerprint_window", "must be positive, got %s", b.FingerprintWindow)
	}
	validUnsubscribe(s, "bulk.unsubscribe", b.Unsubscribe)
	if b.Unsubscribe == UnsubscribeAdd && baseURL(s.Config) == "" {
		s.Errorf("bulk.unsubscribe", "add needs optout.unsubscribe.base_url")
	}
	return b
}

// checkCustomer validates one customer's bulk keys (placed under p,
// "customers[i]").
func checkCustomer(s *config.Section, p string, c *config.Customer) {
	if c.Unsubscribe != "" {
		validUnsubscribe(s, p+".unsubscribe", c.Unsubscribe)
		if c.Unsubscribe == UnsubscribeAdd && baseURL(s.Config) == "" {
			s.Errorf(p+".unsubscribe", "add needs optout.unsubscribe.base_url")
		}
	}
	if c.FingerprintRecipients != nil && *c.FingerprintRecipients < -1 {
		s.Errorf(p+".fingerprint_recipients", "want a count, or -1 to turn fingerprinting off, got %d", *c.FingerprintRecipients)
	}
}

func validUnsubscribe(s *config.Section, p, mode string) {
	switch mode {
	case UnsubscribeRequire, UnsubscribeAdd:
	default:
		s.Errorf(p, "want require or add, got %q", mode)
	}
}

// baseURL is optout.unsubscribe.base_url of cfg, for the bulk keys that
// need it (the optout: section's own errors are reported by Section).
func baseURL(cfg *config.Config) string {
	o, _ := ConfigOf(cfg)
	return o.Unsubscribe.BaseURL
}

// ConfigOf returns the optout: section of cfg (decoded at config.Parse, or
// now for a config parsed without this package's sections).
func ConfigOf(cfg *config.Config) (*Config, error) {
	v, err := cfg.SectionOf(Section)
	o, _ := v.(*Config)
	if o == nil {
		o = DefaultConfig()
	}
	return o, err
}

// BulkConfigOf returns the bulk: section of cfg, like ConfigOf.
func BulkConfigOf(cfg *config.Config) (*BulkConfig, error) {
	v, err := cfg.SectionOf(BulkSection)
	b, _ := v.(*BulkConfig)
	if b == nil {
		b = DefaultBulkConfig()
	}
	return b, err
}
