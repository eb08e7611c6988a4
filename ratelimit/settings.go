package ratelimit

import (
	"time"

	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/policy"
)

// Settings are one customer's effective limits: defaults.limits with the
// customer's own limits over them. A zero limit is unlimited.
type Settings struct {
	MessagesPerMinute    int64
	MessagesPerHour      int64
	MessagesPerDay       int64
	RecipientsPerHour    int64
	RecipientsPerDay     int64
	BytesPerDay          int64
	RecipientsPerMessage int64
	MessageSize          int64
	PerRecipientPerHour  int64
	PerRecipientPerDay   int64
	FoldSubaddress       bool
	CaseSensitiveLocal   bool
	// SpikeEnabled, SpikeWindow and Spike configure spike detection.
	SpikeEnabled bool
	SpikeWindow  time.Duration
	Spike        SpikeParams
	// logins are the customer's per-login limits (login_limits,
	// login_overrides); nil without any (tenancy.go).
	logins *loginLimits
}

// CustomerSection makes each customer's effective limits (Settings) when
// the customer is validated, for a customer with limits of its own: the
// checks read them from the identified customer (settingsOf) and no
// check keeps a map of every customer.
var CustomerSection = config.CustomerSection{Family: "ratelimit", Decode: decodeCustomer, Rebuilds: loginLimited}

// loginLimited reports whether a customer's change touches its per-login
// limits, which the checks resolve when they are built (tenancy.go).
func loginLimited(old, new *config.Customer) bool {
	has := func(c *config.Customer) bool {
		return c != nil && (c.LoginLimits != (config.Limits{}) || len(c.LoginOverrides) > 0)
	}
	return has(old) || has(new)
}

func decodeCustomer(s *config.Section, _ string, c *config.Customer) any {
	if c.Limits == (config.Limits{}) && c.LoginLimits == (config.Limits{}) && len(c.LoginOverrides) == 0 {
		return nil
	}
	sp, err := ConfigOf(s.Config)
	if err != nil {
		return nil // reported with the spike: section
	}
	st := fromLimits(sp, s.Config.Defaults.Limits.Merge(c.Limits))
	st.logins = loginsOf(sp, c)
	return st
}

// SettingsFor returns the effective limits of a customer (the defaults for
// an id the config does not know); an error is a bad spike: section.
func SettingsFor(cfg *config.Config, customerID string) (Settings, error) {
	sp, err := ConfigOf(cfg)
	if err != nil {
		return Settings{}, err
	}
	for i := range cfg.Customers {
		if c := &cfg.Customers[i]; c.ID == customerID {
			v, err := cfg.CustomerSettings(c, CustomerSection)
			if err != nil {
				return Settings{}, err
			}
			if s, ok := v.(Settings); ok {
				return s, nil
			}
			break
		}
	}
	return fromLimits(sp, cfg.Defaults.Limits), nil
}

// settingsOf returns the limits of a message's customer: its own, made
// when it was validated, or the defaults.
func settingsOf(c *policy.Customer, def Settings) Settings {
	if c != nil {
		if s, ok := policy.SettingsOf[Settings](c.Settings, CustomerSection.Family); ok {
			return s
		}
	}
	return def
}

// fromLimits turns limits (config.Limits: pointers, nil when left out)
// and the spike: section into a customer's settings.
func fromLimits(sp *Config, l config.Limits) Settings {
	i := func(p *int64) int64 {
		if p == nil {
			return 0
		}
		return *p
	}
	b := func(p *config.ByteSize) int64 {
		if p == nil {
			return 0
		}
		return int64(*p)
	}
	s := Settings{
		MessagesPerMinute:    i(l.MessagesPerMinute),
		MessagesPerHour:      i(l.MessagesPerHour),
		MessagesPerDay:       i(l.MessagesPerDay),
		RecipientsPerHour:    i(l.RecipientsPerHour),
		RecipientsPerDay:     i(l.RecipientsPerDay),
		BytesPerDay:          b(l.BytesPerDay),
		RecipientsPerMessage: i(l.RecipientsPerMessage),
		MessageSize:          b(l.MessageSize),
		PerRecipientPerHour:  i(l.PerRecipientPerHour),
		PerRecipientPerDay:   i(l.PerRecipientPerDay),
		FoldSubaddress:       l.FoldSubaddress == nil || *l.FoldSubaddress,
		CaseSensitiveLocal:   l.CaseSensitiveLocal != nil && *l.CaseSensitiveLocal,
		SpikeEnabled:         sp.Enabled,
		SpikeWindow:          sp.Window,
		Spike: SpikeParams{
			Factor:   DefaultSpikeFactor,
			Floor:    DefaultSpikeFloor,
			Baseline: DefaultSpikeBaseline,
			Alpha:    sp.Alpha,
		},
	}
	if l.SpikeFactor != nil && *l.SpikeFactor > 0 {
		s.Spike.Factor = *l.SpikeFactor
	}
	if l.SpikeFloor != nil && *l.SpikeFloor > 0 {
		s.Spike.Floor = *l.SpikeFloor
	}
	if l.SpikeBaseline != nil && *l.SpikeBaseline > 0 {
		s.Spike.Baseline = *l.SpikeBaseline
	}
	return s
}

// counted is one counter-backed limit: which setting, which algorithm and
// window, and what it counts.
type counted struct {
	name   string
	kind   Kind
	period time.Duration
	unit   string
	// perRcpt limits count recipients (reserved at RCPT), the others
	// messages or bytes (reserved at end of message).
	perRcpt bool
	get     func(Settings) int64
}

// countedLimits are the counter-backed limits, in report order.
var countedLimits = []counted{
	{"messages_per_minute", KindRate, time.Minute, "messages", false, func(s Settings) int64 { return s.MessagesPerMinute }},
	{"messages_per_hour", KindRate, time.Hour, "messages", false, func(s Settings) int64 { return s.MessagesPerHour }},
	{"messages_per_day", KindWindow, 24 * time.Hour, "messages", false, func(s Settings) int64 { return s.MessagesPerDay }},
	{"bytes_per_day", KindWindow, 24 * time.Hour, "bytes", false, func(s Settings) int64 { return s.BytesPerDay }},
	{"recipients_per_hour", KindRate, time.Hour, "recipients", true, func(s Settings) int64 { return s.RecipientsPerHour }},
	{"recipients_per_day", KindWindow, 24 * time.Hour, "recipients", true, func(s Settings) int64 { return s.RecipientsPerDay }},
}

// op returns the counter op of a limit for amount n.
func (c counted) op(limit, n int64) Op {
	return Op{Kind: c.kind, Name: c.name, Key: c.name, Limit: limit, Period: c.period, N: n}
}
