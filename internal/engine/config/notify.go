package config

import "time"

// DefaultNotifyInterval is the least time between two notifications of
// one kind about one customer.
const DefaultNotifyInterval = 6 * time.Hour

// NotificationsConfig is the mail sent to provider.postmaster (through
// reports.smtp) when a customer is flagged for sending to opted-out
// recipients or crosses the complaint act threshold.
type NotificationsConfig struct {
	// Enabled turns notifications on (default true; they need
	// provider.postmaster).
	Enabled *bool `yaml:"enabled,omitempty"`
	// Interval is the least time between two notifications of one kind
	// about one customer, shared by every gateway of a Redis store
	// (default 6h).
	Interval time.Duration `yaml:"interval"`
	// AbuseContact also mails the customer's abuse_contact.
	AbuseContact bool `yaml:"abuse_contact"`
}

// On reports whether notifications are sent.
func (n *NotificationsConfig) On(c *Config) bool {
	return (n.Enabled == nil || *n.Enabled) && c.Provider.Postmaster != ""
}

func (n *NotificationsConfig) defaults() {
	if n.Interval == 0 {
		n.Interval = DefaultNotifyInterval
	}
}

func (n *NotificationsConfig) validate(v *validator) {
	if n.Interval < time.Minute {
		v.errf("notifications.interval", "want at least 1m, got %s", n.Interval)
	}
}
