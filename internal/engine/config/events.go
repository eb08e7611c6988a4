package config

import (
	"fmt"
	"net"
	"net/mail"
	"strings"
	"time"
)

// Defaults of the admin, events and reports sections.
const (
	// DefaultAdminListen keeps the admin server on loopback.
	DefaultAdminListen = "127.0.0.1:8892"
	// DefaultDashboardRange is the period the dashboard shows.
	DefaultDashboardRange = 24 * time.Hour
	// DefaultMetricsTopCustomers bounds the customer label of the metrics.
	DefaultMetricsTopCustomers = 20
	// DefaultAdminMaxConnections and DefaultAdminMaxConnectionsPerClient
	// cap the admin server's connections (a console and a few scrapers).
	DefaultAdminMaxConnections          = 64
	DefaultAdminMaxConnectionsPerClient = 16
	// DefaultEventsRetention is how long single events are kept.
	DefaultEventsRetention = 30 * 24 * time.Hour
	// DefaultAcceptedRetention is how long routine accepted-message events
	// stay in Redis.
	DefaultAcceptedRetention = 3 * 24 * time.Hour
	// DefaultAggregateRetention is how long the hourly per-customer
	// counters are kept (13 months: a year-on-year comparison).
	DefaultAggregateRetention = 396 * 24 * time.Hour
	// DefaultEventsBuffer is the queue between the milter and the writer.
	DefaultEventsBuffer = 16384
	// DefaultEventsDailyCap caps one day's Redis stream.
	DefaultEventsDailyCap = 2_000_000
	// DefaultEventsRing is the memory backend's number of kept events.
	DefaultEventsRing = 100_000
	// DefaultReportTop is the length of the top-offenders table.
	DefaultReportTop = 10
	// DefaultReportSMTPTimeout bounds one report mailing conversation.
	DefaultReportSMTPTimeout = 30 * time.Second
)

// AdminConfig configures the admin HTTP server: health, readiness,
// Prometheus metrics, the JSON API and the postmaster's dashboard.
type AdminConfig struct {
	// Listen is HOST:PORT of the admin server; "off" disables it.
	Listen string `yaml:"listen"`
	// TokenFile holds the bearer token every endpoint but /healthz
	// requires. Without it the admin server does not start (it never runs
	// unauthenticated).
	TokenFile string `yaml:"token_file"`
	// TLSCert and TLSKey are PEM files; both set serves HTTPS.
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`
	// InsecurePlaintext allows a non-loopback listener without TLS (behind
	// a TLS-terminating proxy on a private network).
	InsecurePlaintext bool `yaml:"insecure_plaintext"`
	// DashboardRange is the period the dashboard shows by default.
	DashboardRange time.Duration `yaml:"dashboard_range"`
	// DashboardRefresh reloads the dashboard page this often (HTML meta
	// refresh, no JavaScript); 0 disables it.
	DashboardRefresh time.Duration `yaml:"dashboard_refresh"`
	// MetricsTopCustomers is how many customers get their own label value
	// in the metrics; the others are counted as "other".
	MetricsTopCustomers int `yaml:"metrics_top_customers"`
	// MaxConnections caps the connections the admin server holds at once
	// and MaxConnectionsPerClient those of one client address (an IPv4
	// address or an IPv6 /64); one over a cap is closed at once. Lowered
	// at start when the descriptor limit cannot hold them beside the
	// milter's (see serve's "descriptor budget" log line).
	MaxConnections          int `yaml:"max_connections"`
	MaxConnectionsPerClient int `yaml:"max_connections_per_client"`
}

// EventsConfig configures the decision record: every decision is an event,
// kept for Retention, with hourly per-customer counters kept for
// AggregateRetention (reports over months read only those).
type EventsConfig struct {
	// Retention is how long single events are kept (Redis: TTL of the
	// daily stream; memory: events older are not loaded at start).
	Retention time.Duration `yaml:"retention"`
	// AggregateRetention is how long the hourly counters are kept.
	AggregateRetention time.Duration `yaml:"aggregate_retention"`
	// AcceptedRetention is how long Redis keeps the routine events (a
	// message accepted at end of message with no decision against it),
	// which are most of them, in a compact form: long enough to answer
	// "what happened to reference X" for the days a customer asks, while
	// refusals, holds, monitor-mode would-be decisions and errors stay
	// for Retention. The full record of every event is the decision log
	// line, for the provider's log store (docs/capacity.md). At most
	// Retention; the memory backend keeps every event for Retention.
	AcceptedRetention time.Duration `yaml:"accepted_retention"`
	// Buffer is how many events may wait for the writer; beyond it events
	// are dropped and counted, never waited for.
	Buffer int `yaml:"buffer"`
	// DailyCap caps the number of events in one day's Redis stream
	// (approximate trimming, MAXLEN ~).
	DailyCap int64 `yaml:"daily_cap"`
	// Ring is how many recent events the memory backend keeps.
	Ring int `yaml:"ring"`
	// File is a JSON-lines file the memory backend appends every event to
	// and reads back at start; the commands read it. Empty: events.jsonl
	// under store.path when that is set; "off": no file.
	File string `yaml:"file"`
}

// ReportsConfig configures postmaster reports and their mailing.
type ReportsConfig struct {
	// Top is the length of the top-offenders table.
	Top int `yaml:"top"`
	// CustomerReports selects which customers `report -mail` sends their
	// own report to (abuse_contact): "stopped" (only those with mail
	// refused, deferred or held, or would-be refusals in monitor mode),
	// "all", or "none".
	CustomerReports string `yaml:"customer_reports"`
	// SubjectPrefix starts every report mail's subject.
	SubjectPrefix string `yaml:"subject_prefix"`
	// SMTP is the relay reports are mailed through.
	SMTP ReportSMTP `yaml:"smtp"`
}

// ReportSMTP is the SMTP relay of `aupguard report -mail`. Use a relay
// that does not pass the reports through aupguard itself.
type ReportSMTP struct {
	Host string `yaml:"host"`
	Port int    `yaml:"port"`
	// TLS is "none", "opportunistic" (STARTTLS when offered; the
	// default), "starttls" (required) or "tls" (implicit TLS, port 465).
	TLS string `yaml:"tls"`
	// Username and PasswordFile enable AUTH PLAIN; never over a clear
	// connection to a remote host.
	Username     string `yaml:"username"`
	PasswordFile string `yaml:"password_file"`
	// From is the envelope and header sender (default provider.postmaster).
	From string `yaml:"from"`
	// Helo is the EHLO name (default: the local host name).
	Helo    string        `yaml:"helo"`
	Timeout time.Duration `yaml:"timeout"`
}

func (a *AdminConfig) defaults() {
	if a.Listen == "" {
		a.Listen = DefaultAdminListen
	}
	if a.DashboardRange == 0 {
		a.DashboardRange = DefaultDashboardRange
	}
	if a.MetricsTopCustomers == 0 {
		a.MetricsTopCustomers = DefaultMetricsTopCustomers
	}
	if a.MaxConnections == 0 {
		a.MaxConnections = DefaultAdminMaxConnections
	}
	if a.MaxConnectionsPerClient == 0 {
		a.MaxConnectionsPerClient = DefaultAdminMaxConnectionsPerClient
	}
}

func (a *AdminConfig) validate(v *validator) {
	if a.Listen != "off" {
		host, _, err := net.SplitHostPort(a.Listen)
		switch {
		case err != nil:
			v.errf("admin.listen", "want HOST:PORT or off, got %q", a.Listen)
		case !isLoopback(host) && a.TLSCert == "" && !a.InsecurePlaintext:
			// RFC 6750 §5.3: bearer tokens must only cross the network
			// inside TLS.
			v.errf("admin.listen", "non-loopback %q without tls_cert would send the bearer token in clear (RFC 6750 §5.3); set tls_cert/tls_key or insecure_plaintext", host)
		}
	}
	if (a.TLSCert == "") != (a.TLSKey == "") {
		v.errf("admin.tls_cert", "tls_cert and tls_key go together")
	}
	v.duration("admin.dashboard_range", a.DashboardRange)
	if a.DashboardRefresh != 0 && a.DashboardRefresh < 5*time.Second {
		v.errf("admin.dashboard_refresh", "must be 0 (off) or at least 5s, got %s", a.DashboardRefresh)
	}
	if a.MetricsTopCustomers < 0 {
		v.errf("admin.metrics_top_customers", "must not be negative, got %d", a.MetricsTopCustomers)
	}
	v.positive("admin.max_connections", a.MaxConnections)
	v.positive("admin.max_connections_per_client", a.MaxConnectionsPerClient)
	if a.MaxConnectionsPerClient > a.MaxConnections && a.MaxConnections > 0 {
		v.errf("admin.max_connections_per_client", "%d is above admin.max_connections (%d)", a.MaxConnectionsPerClient, a.MaxConnections)
	}
}

func (e *EventsConfig) defaults() {
	if e.Retention == 0 {
		e.Retention = DefaultEventsRetention
	}
	if e.AcceptedRetention == 0 {
		e.AcceptedRetention = min(DefaultAcceptedRetention, e.Retention)
	}
	if e.AggregateRetention == 0 {
		e.AggregateRetention = DefaultAggregateRetention
	}
	if e.Buffer == 0 {
		e.Buffer = DefaultEventsBuffer
	}
	if e.DailyCap == 0 {
		e.DailyCap = DefaultEventsDailyCap
	}
	if e.Ring == 0 {
		e.Ring = DefaultEventsRing
	}
}

func (e *EventsConfig) validate(v *validator) {
	if e.Retention < time.Hour {
		v.errf("events.retention", "must be at least 1h, got %s", e.Retention)
	}
	if e.AcceptedRetention < time.Hour || e.AcceptedRetention > e.Retention {
		v.errf("events.accepted_retention", "must be between 1h and events.retention (%s), got %s", e.Retention, e.AcceptedRetention)
	}
	if e.AggregateRetention < e.Retention {
		v.errf("events.aggregate_retention", "must be at least events.retention (%s), got %s", e.Retention, e.AggregateRetention)
	}
	if e.Buffer < 16 {
		v.errf("events.buffer", "must be at least 16, got %d", e.Buffer)
	}
	if e.DailyCap < 1000 {
		v.errf("events.daily_cap", "must be at least 1000, got %d", e.DailyCap)
	}
	if e.Ring < 100 {
		v.errf("events.ring", "must be at least 100, got %d", e.Ring)
	}
}

func (r *ReportsConfig) defaults() {
	if r.Top == 0 {
		r.Top = DefaultReportTop
	}
	if r.CustomerReports == "" {
		r.CustomerReports = "stopped"
	}
	if r.SubjectPrefix == "" {
		r.SubjectPrefix = "[aupguard]"
	}
	s := &r.SMTP
	if s.Host == "" {
		s.Host = "localhost"
	}
	if s.TLS == "" {
		s.TLS = "opportunistic"
	}
	if s.Port == 0 {
		s.Port = 25
		if s.TLS == "tls" {
			s.Port = 465
		}
	}
	if s.Timeout == 0 {
		s.Timeout = DefaultReportSMTPTimeout
	}
}

func (r *ReportsConfig) validate(v *validator) {
	if r.Top < 1 {
		v.errf("reports.top", "must be at least 1, got %d", r.Top)
	}
	switch r.CustomerReports {
	case "stopped", "all", "none":
	default:
		v.errf("reports.customer_reports", "want stopped, all or none, got %q", r.CustomerReports)
	}
	s := r.SMTP
	if s.Port < 1 || s.Port > 65535 {
		v.errf("reports.smtp.port", "want 1-65535, got %d", s.Port)
	}
	switch s.TLS {
	case "none", "opportunistic", "starttls", "tls":
	default:
		v.errf("reports.smtp.tls", "want none, opportunistic, starttls or tls, got %q", s.TLS)
	}
	if (s.Username == "") != (s.PasswordFile == "") {
		v.errf("reports.smtp.username", "username and password_file go together")
	}
	// RFC 4954 §4: a mechanism sending the password in clear (PLAIN) must
	// not be used without TLS; only a loopback relay is exempt.
	if s.Username != "" && (s.TLS == "none" || s.TLS == "opportunistic") && !isLoopback(s.Host) {
		v.errf("reports.smtp.tls", "AUTH to remote host %q needs tls: starttls or tls (RFC 4954 §4), got %q", s.Host, s.TLS)
	}
	if s.From != "" {
		if _, err := mail.ParseAddress(s.From); err != nil || strings.ContainsAny(s.From, "\r\n") {
			v.errf("reports.smtp.from", "bad address %q", s.From)
		}
	}
	v.duration("reports.smtp.timeout", s.Timeout)
	if strings.ContainsAny(r.SubjectPrefix, "\r\n") {
		v.errf("reports.subject_prefix", "must be one line")
	}
	if pm := v.cfg.Provider.Postmaster; pm != "" {
		if _, err := mail.ParseAddress(pm); err != nil {
			v.errf("provider.postmaster", "bad address %q (reports are mailed to it): %v", pm, err)
		}
	}
	v.cfg.validateAbuseContacts(v)
}

// validateAbuseContacts checks customers[].abuse_contact (reports and
// notifications are mailed to it).
func (c *Config) validateAbuseContacts(v *validator) {
	for i, cu := range c.Customers {
		if cu.AbuseContact == "" {
			continue
		}
		if _, err := mail.ParseAddress(cu.AbuseContact); err != nil || strings.ContainsAny(cu.AbuseContact, "\r\n") {
			v.errf(fmt.Sprintf("customers[%d].abuse_contact", i), "bad address %q", cu.AbuseContact)
		}
	}
}

// DefaultAuditRetention is how long the audit trail keeps a change.
const DefaultAuditRetention = 365 * 24 * time.Hour

// AuditConfig configures the audit trail (internal/observability/audit).
type AuditConfig struct {
	// Retention is how long a change is kept (both store backends).
	Retention time.Duration `yaml:"retention"`
}

func (a *AuditConfig) defaults() {
	if a.Retention == 0 {
		a.Retention = DefaultAuditRetention
	}
}

func (a *AuditConfig) validate(v *validator) {
	if a.Retention < 24*time.Hour {
		v.errf("audit.retention", "must be at least 24h, got %s", a.Retention)
	}
}
