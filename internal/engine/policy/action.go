package policy

import "fmt"

// Action is what the gateway does with a message or recipient.
type Action int

// The actions, in increasing order of severity. Ignore turns a finding into
// nothing at all (not even a report); Accept records it and lets the mail go.
const (
	Ignore Action = iota
	Accept
	Quarantine
	Defer
	Reject
)

var actionNames = map[Action]string{
	Ignore:     "ignore",
	Accept:     "accept",
	Quarantine: "quarantine",
	Defer:      "defer",
	Reject:     "reject",
}

// String returns the action's config and log name.
func (a Action) String() string {
	if s, ok := actionNames[a]; ok {
		return s
	}
	return fmt.Sprintf("action(%d)", int(a))
}

// ParseAction parses an action name as used in the config.
func ParseAction(s string) (Action, error) {
	for a, n := range actionNames {
		if n == s {
			return a, nil
		}
	}
	return Ignore, fmt.Errorf("unknown action %q (want accept, defer, reject, quarantine or ignore)", s)
}

// Decisive reports whether the action ends the chain: a defer, reject or
// quarantine is the verdict, the first one wins.
func (a Action) Decisive() bool { return a >= Quarantine }

// MarshalText implements encoding.TextMarshaler.
func (a Action) MarshalText() ([]byte, error) { return []byte(a.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (a *Action) UnmarshalText(b []byte) error {
	v, err := ParseAction(string(b))
	if err != nil {
		return err
	}
	*a = v
	return nil
}
