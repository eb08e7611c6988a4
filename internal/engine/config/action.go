package config

import (
	"fmt"

	"go.yaml.in/yaml/v3"

	"github.com/aupguard/aupguard/internal/engine/policy"
)

// Action is an action as the config writes it (accept, defer, reject,
// quarantine, ignore), decoded once into a policy.Action with its line on
// error. The zero Action is "not set": the default applies.
type Action struct {
	policy.Action
	set bool
}

// ActionOf is a set Action.
func ActionOf(a policy.Action) Action { return Action{Action: a, set: true} }

// Get returns the action and whether the config set it.
func (a Action) Get() (policy.Action, bool) { return a.Action, a.set }

// IsSet reports whether the config set the action.
func (a Action) IsSet() bool { return a.set }

// IsZero reports whether the action is not set (yaml's omitempty).
func (a Action) IsZero() bool { return !a.set }

// UnmarshalYAML decodes an action name; an empty string leaves it unset.
// An unknown name is a type error at its line (decoding goes on).
func (a *Action) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	if s == "" {
		*a = Action{}
		return nil
	}
	p, err := policy.ParseAction(s)
	if err != nil {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %v", n.Line, err)}}
	}
	*a = ActionOf(p)
	return nil
}

// MarshalYAML renders the action's name (nothing when unset).
func (a Action) MarshalYAML() (any, error) {
	if !a.set {
		return nil, nil
	}
	return a.Action.String(), nil
}
