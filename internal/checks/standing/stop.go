package standing

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Scope is what a stop applies to.
type Scope string

// The scopes. A login is the SASL login (policy.Conn.AuthLogin) or, for
// mail submitted on the MTA host, the Unix login (policy.Conn.LocalLogin).
const (
	ScopeReseller Scope = "reseller"
	ScopeCustomer Scope = "customer"
	ScopeLogin    Scope = "login"
)

// Action is what a stop does with its sender's mail.
type Action string

// The actions, in increasing severity.
const (
	ActionHold   Action = "hold"
	ActionDefer  Action = "defer"
	ActionReject Action = "reject"
)

// Sources of a stop: set by hand, or raised by an automatic flag.
const (
	SourceManual  = "manual"
	SourceContent = "content"
	SourceOptout  = "optout"
	SourceBounce  = "bounce"
)

// Bounds of a stop's fields (the API and the CLI refuse more).
const (
	MaxIDLen      = 256
	MaxReasonLen  = 200
	MaxWhoLen     = 128
	MaxSamples    = 10
	maxSampleLen  = 64
	maxSourceLen  = 32
	maxStopsShown = 10000
)

// Stop is one stopped reseller, customer or login.
type Stop struct {
	Scope  Scope  `json:"scope"`
	ID     string `json:"id"`
	Action Action `json:"action"`
	// Reason is shown to the customer in the defer and reject replies
	// (printable ASCII only there) and to the postmaster.
	Reason string `json:"reason"`
	// Until, when set, ends the stop by itself.
	Until time.Time `json:"until,omitzero"`
	// Source is manual, or the automatic flag that set it.
	Source string `json:"source"`
	// Who set it: the admin token's name, the CLI's user, or "aupguard"
	// for an automatic flag.
	Who  string    `json:"who"`
	When time.Time `json:"when"`
	// Samples are the reference ids of the messages that raised an
	// automatic flag (the newest last).
	Samples []string `json:"samples,omitempty"`
}

// Key is the stop's key in the store: scope and id.
func (s Stop) Key() string { return Key(s.Scope, s.ID) }

// Key is the store key of scope and id.
func Key(scope Scope, id string) string { return string(scope) + ":" + id }

// Active reports whether the stop is in force at now.
func (s Stop) Active(now time.Time) bool { return s.Until.IsZero() || now.Before(s.Until) }

// ParseScope parses a scope name.
func ParseScope(s string) (Scope, error) {
	switch Scope(s) {
	case ScopeReseller, ScopeCustomer, ScopeLogin:
		return Scope(s), nil
	}
	return "", fmt.Errorf("scope %q: want reseller, customer or login", s)
}

// ParseAction parses an action name.
func ParseAction(s string) (Action, error) {
	switch Action(s) {
	case ActionHold, ActionDefer, ActionReject:
		return Action(s), nil
	}
	return "", fmt.Errorf("action %q: want hold, defer or reject", s)
}

func (a Action) rank() int {
	switch a {
	case ActionReject:
		return 3
	case ActionDefer:
		return 2
	case ActionHold:
		return 1
	}
	return 0
}

// ValidID checks an id: 1 to MaxIDLen bytes of printable UTF-8 without
// spaces.
func ValidID(id string) error {
	if id == "" || len(id) > MaxIDLen || !utf8.ValidString(id) {
		return fmt.Errorf("id: want 1 to %d bytes of UTF-8", MaxIDLen)
	}
	for _, r := range id {
		if r <= 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return errors.New("id: no spaces or control characters")
		}
	}
	return nil
}

// Validate checks a stop before it is stored.
func (s Stop) Validate() error {
	if _, err := ParseScope(string(s.Scope)); err != nil {
		return err
	}
	if err := ValidID(s.ID); err != nil {
		return err
	}
	if _, err := ParseAction(string(s.Action)); err != nil {
		return err
	}
	if strings.TrimSpace(s.Reason) == "" || len(s.Reason) > MaxReasonLen || !utf8.ValidString(s.Reason) {
		return fmt.Errorf("reason: want 1 to %d bytes of text", MaxReasonLen)
	}
	for _, r := range s.Reason {
		if r < 0x20 || r == 0x7f {
			return errors.New("reason: no control characters")
		}
	}
	if s.Source == "" || len(s.Source) > maxSourceLen || len(s.Who) > MaxWhoLen || len(s.Samples) > MaxSamples {
		return errors.New("source, who or samples out of bounds")
	}
	for _, x := range s.Samples {
		if len(x) > maxSampleLen {
			return errors.New("sample reference too long")
		}
	}
	return nil
}

// replyReason is the stop's reason as it may go into an SMTP reply:
// printable ASCII (anything else becomes '?'), at most MaxReasonLen.
func replyReason(s string) string {
	b := make([]byte, 0, len(s))
	for _, r := range s {
		if len(b) >= MaxReasonLen {
			break
		}
		if r >= 0x20 && r < 0x7f {
			b = append(b, byte(r))
		} else {
			b = append(b, '?')
		}
	}
	return strings.TrimSpace(string(b))
}
