package config

import (
	"os"
	"strings"
	"time"

	"github.com/aupguard/aupguard/internal/engine/policy"
)

// Defaults for everything the config may leave out. Safe by default: the
// milter and admin listeners are on loopback.
const (
	// DefaultListen is a Unix socket that only the MTA's group can open
	// (mode 0660, group DefaultSocketGroup), in a directory under Postfix's
	// queue directory, so that a chrooted smtpd/cleanup reaches it too as
	// unix:aupguard/milter.sock (docs/config.md#milter).
	DefaultListen = "unix:/var/spool/postfix/aupguard/milter.sock"
	// DefaultSocketGroup is the group of the milter socket: Postfix's.
	DefaultSocketGroup    = "postfix"
	DefaultMaxConnections = 512
	// DefaultReadTimeout is how long an MTA connection may stay silent.
	// Postfix waits up to smtpd_timeout (300s) for each SMTP command, and
	// one silence of the milter connection can span several of them (it
	// sends no event for EHLO, AUTH, NOOP or RSET until the next MAIL
	// FROM; the header and body events come after the whole DATA). A default shorter
	// than what Postfix tolerates would cut sessions Postfix keeps (451
	// 4.7.1 from milter_default_action = tempfail), so it is libmilter's
	// own default, 2h10s: long enough for any session, and a dead peer is
	// found by TCP keepalive anyway.
	DefaultReadTimeout = 7210 * time.Second
	// MTACommandTimeout is Postfix's smtpd_timeout default: the longest an
	// SMTP client may pause between commands, hence between two milter
	// events. check-config warns about a milter.read_timeout below it.
	MTACommandTimeout      = 300 * time.Second
	DefaultWriteTimeout    = 30 * time.Second
	DefaultShutdownTimeout = 30 * time.Second
	DefaultDecisionTimeout = 2 * time.Second
	DefaultStoreTimeout    = 500 * time.Millisecond
)

// DefaultAllowedPeers are the users whose processes may speak milter by
// default: Postfix's smtpd and cleanup run as postfix; root for the
// administrator's tools.
var DefaultAllowedPeers = []string{"postfix", "root"}

func (c *Config) applyDefaults(opts Options) {
	m := &c.Milter
	if m.Listen == "" {
		m.Listen = DefaultListen
	}
	if m.AllowedPeers == nil {
		m.AllowedPeers = append([]string(nil), DefaultAllowedPeers...)
	}
	if m.SocketGroup == "" {
		m.SocketGroup = DefaultSocketGroup
	}
	if m.MaxConnections == 0 {
		m.MaxConnections = DefaultMaxConnections
	}
	if m.ReadTimeout == 0 {
		m.ReadTimeout = DefaultReadTimeout
	}
	if m.WriteTimeout == 0 {
		m.WriteTimeout = DefaultWriteTimeout
	}
	if m.ShutdownTimeout == 0 {
		m.ShutdownTimeout = DefaultShutdownTimeout
	}
	if m.DecisionTimeout == 0 {
		m.DecisionTimeout = DefaultDecisionTimeout
	}
	if c.Log.Format == "" {
		c.Log.Format = "json"
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.Log.Syslog.Address == "" {
		c.Log.Syslog.Address = "unix:/dev/log"
	}
	if c.Log.Syslog.Facility == "" {
		c.Log.Syslog.Facility = "mail"
	}
	if c.Log.Syslog.Tag == "" {
		c.Log.Syslog.Tag = "aupguard"
	}
	if c.Store.Backend == "" {
		c.Store.Backend = "memory"
	}
	if c.Store.Path == "" && c.Store.Backend == "memory" {
		// systemd's StateDirectory= (the packaged unit's /var/lib/aupguard)
		// names the folder the service may write.
		c.Store.Path = stateDirectory(os.Getenv("STATE_DIRECTORY"))
	}
	if !c.Store.OnError.IsSet() {
		c.Store.OnError = ActionOf(policy.Defer)
	}
	if c.Store.Timeout == 0 {
		c.Store.Timeout = DefaultStoreTimeout
	}
	if c.Store.Redis.DialTimeout == 0 {
		c.Store.Redis.DialTimeout = time.Second
	}
	if c.Store.Redis.KeyPrefix == "" {
		c.Store.Redis.KeyPrefix = "aupg:"
	}
	if !c.Unidentified.Action.IsSet() {
		c.Unidentified.Action = ActionOf(policy.Reject)
	}
	if c.Defaults.Mode == "" {
		c.Defaults.Mode = "enforce"
	}
	if len(c.Chain) == 0 {
		c.Chain = append([]string(nil), opts.DefaultChain...)
	}
	for i := range c.Customers {
		if c.Customers[i].Mode == "" {
			c.Customers[i].Mode = c.Defaults.Mode
		}
	}
	c.LocalSubmission.defaults(&c.Provider)
	c.DNS.defaults()
	c.Admin.defaults()
	c.Directory.defaults()
	c.Events.defaults()
	c.Audit.defaults()
	c.Reports.defaults()
	c.Notifications.defaults()
	c.Runtime.defaults()
}

// stateDirectory is the first folder of systemd's $STATE_DIRECTORY (a
// colon-separated list), or "".
func stateDirectory(env string) string {
	first, _, _ := strings.Cut(env, ":")
	return first
}
