package config

import (
	"fmt"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Limits are a customer's volume limits (check message_size,
// recipients_per_message and rate_limit; package ratelimit validates them
// and resolves them per customer). In defaults.limits a field left
// out is unlimited; in customers[].limits a field left out inherits
// defaults.limits. 0 means unlimited, so a customer can be freed from a
// default limit.
type Limits struct {
	// MessagesPerMinute and MessagesPerHour are smooth rates (GCRA): a
	// burst of the whole amount is allowed, then one message per
	// period/limit.
	MessagesPerMinute *int64 `yaml:"messages_per_minute,omitempty"`
	MessagesPerHour   *int64 `yaml:"messages_per_hour,omitempty"`
	// MessagesPerDay is a quota over a sliding 24-hour window.
	MessagesPerDay *int64 `yaml:"messages_per_day,omitempty"`
	// RecipientsPerHour is a smooth rate of accepted recipients.
	RecipientsPerHour *int64 `yaml:"recipients_per_hour,omitempty"`
	// RecipientsPerDay is a quota of accepted recipients over a sliding
	// 24-hour window.
	RecipientsPerDay *int64 `yaml:"recipients_per_day,omitempty"`
	// BytesPerDay is a quota of message bytes (each message counted once)
	// over a sliding 24-hour window; "500MB", "2GiB" or a plain number.
	BytesPerDay *ByteSize `yaml:"bytes_per_day,omitempty"`
	// RecipientsPerMessage caps one transaction's recipients; further
	// recipients get 452 4.5.3 (the client sends them in another one).
	RecipientsPerMessage *int64 `yaml:"recipients_per_message,omitempty"`
	// MessageSize is the largest message accepted, as declared with SIZE=
	// at MAIL FROM and as received.
	MessageSize *ByteSize `yaml:"message_size,omitempty"`
	// PerRecipientPerHour and PerRecipientPerDay cap the messages from the
	// customer to one recipient address (mailbombing, harassment).
	PerRecipientPerHour *int64 `yaml:"per_recipient_per_hour,omitempty"`
	PerRecipientPerDay  *int64 `yaml:"per_recipient_per_day,omitempty"`
	// FoldSubaddress counts "user+tag@d" as "user@d" for the per-recipient
	// limits (default true: one person, one count).
	FoldSubaddress *bool `yaml:"fold_subaddress,omitempty"`
	// CaseSensitiveLocal keeps the local part's case when counting
	// recipients (default false; RFC 5321 §2.4 allows case-sensitive local
	// parts, almost nobody has them).
	CaseSensitiveLocal *bool `yaml:"case_sensitive_local,omitempty"`
	// SpikeFactor, SpikeFloor and SpikeBaseline tune spike detection for
	// a customer (the spike: section, package ratelimit): a spike is a short window above
	// SpikeFactor × baseline and above SpikeFloor messages; SpikeBaseline
	// is the hourly count assumed without history. 0 keeps the default.
	SpikeFactor   *float64 `yaml:"spike_factor,omitempty"`
	SpikeFloor    *int64   `yaml:"spike_floor,omitempty"`
	SpikeBaseline *int64   `yaml:"spike_baseline,omitempty"`
}

// Merge returns l with every field o sets replaced by o's (a customer's
// limits over the defaults).
func (l Limits) Merge(o Limits) Limits {
	set := func(dst **int64, src *int64) {
		if src != nil {
			*dst = src
		}
	}
	set(&l.MessagesPerMinute, o.MessagesPerMinute)
	set(&l.MessagesPerHour, o.MessagesPerHour)
	set(&l.MessagesPerDay, o.MessagesPerDay)
	set(&l.RecipientsPerHour, o.RecipientsPerHour)
	set(&l.RecipientsPerDay, o.RecipientsPerDay)
	set(&l.RecipientsPerMessage, o.RecipientsPerMessage)
	set(&l.PerRecipientPerHour, o.PerRecipientPerHour)
	set(&l.PerRecipientPerDay, o.PerRecipientPerDay)
	set(&l.SpikeFloor, o.SpikeFloor)
	set(&l.SpikeBaseline, o.SpikeBaseline)
	if o.BytesPerDay != nil {
		l.BytesPerDay = o.BytesPerDay
	}
	if o.MessageSize != nil {
		l.MessageSize = o.MessageSize
	}
	if o.FoldSubaddress != nil {
		l.FoldSubaddress = o.FoldSubaddress
	}
	if o.CaseSensitiveLocal != nil {
		l.CaseSensitiveLocal = o.CaseSensitiveLocal
	}
	if o.SpikeFactor != nil {
		l.SpikeFactor = o.SpikeFactor
	}
	return l
}

// validate checks the limits at path p: counts and sizes are not negative
// (0 is unlimited), a spike factor is at least 1 (0 keeps the default).
// Limits belong to the core defaults: and customers: sections, so they are
// validated here, also for a config parsed without the families' sections
// and for every customer of the live directory (WithCustomers).
func (l *Limits) validate(v *validator, p string) {
	ints := []struct {
		name string
		n    *int64
	}{
		{"messages_per_minute", l.MessagesPerMinute},
		{"messages_per_hour", l.MessagesPerHour},
		{"messages_per_day", l.MessagesPerDay},
		{"recipients_per_hour", l.RecipientsPerHour},
		{"recipients_per_day", l.RecipientsPerDay},
		{"recipients_per_message", l.RecipientsPerMessage},
		{"per_recipient_per_hour", l.PerRecipientPerHour},
		{"per_recipient_per_day", l.PerRecipientPerDay},
		{"spike_floor", l.SpikeFloor},
		{"spike_baseline", l.SpikeBaseline},
	}
	for _, f := range ints {
		if f.n != nil && *f.n < 0 {
			v.errf(p+"."+f.name, "must not be negative (0 is unlimited), got %d", *f.n)
		}
	}
	if l.BytesPerDay != nil && *l.BytesPerDay < 0 {
		v.errf(p+".bytes_per_day", "must not be negative")
	}
	if l.MessageSize != nil && *l.MessageSize < 0 {
		v.errf(p+".message_size", "must not be negative")
	}
	if l.SpikeFactor != nil && *l.SpikeFactor != 0 && *l.SpikeFactor < 1 {
		v.errf(p+".spike_factor", "want a factor of at least 1 (0 keeps the default), got %g", *l.SpikeFactor)
	}
}

// ByteSize is a size in bytes; in YAML a plain number or a number with a
// unit: k/KB (1000), KiB (1024), MB, MiB, GB, GiB.
type ByteSize int64

// UnmarshalYAML implements yaml.Unmarshaler; errors carry the line.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseByteSize(n.Value)
	if err != nil || n.Kind != yaml.ScalarNode {
		if err == nil {
			err = fmt.Errorf("want a size such as 10MB")
		}
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %v", n.Line, err)}}
	}
	*b = ByteSize(v)
	return nil
}

// MarshalYAML renders the size as a plain number of bytes.
func (b ByteSize) MarshalYAML() (any, error) { return int64(b), nil }

var byteUnits = []struct {
	suffix string
	mult   int64
}{
	{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"tib", 1 << 40},
	{"kb", 1e3}, {"mb", 1e6}, {"gb", 1e9}, {"tb", 1e12},
	{"k", 1e3}, {"m", 1e6}, {"g", 1e9}, {"b", 1},
}

// ParseByteSize parses "25MB", "10 MiB", "1048576".
func ParseByteSize(s string) (int64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	mult := int64(1)
	for _, u := range byteUnits {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseFloat(t, 64)
	if err != nil || n < 0 || n*float64(mult) > 1<<62 {
		return 0, fmt.Errorf("bad size %q: want a number with an optional unit (KB, MB, GB, KiB, MiB, GiB)", s)
	}
	return int64(n * float64(mult)), nil
}
