package policy

// Settings are one customer's own settings of the check families: each
// family's typed value, filed under the family's name. The core stores
// them without knowing their types (they are made when the customer is
// validated, by the family's customer section, config.CustomerSection)
// and a family reads its own back with SettingsOf. A customer that has
// no setting of its own for a family has no entry: the family's defaults
// apply. The zero value holds nothing; a Settings is never changed once
// made (With returns a new one).
type Settings struct {
	list []familySettings
}

type familySettings struct {
	family string
	v      any
}

// With returns s with family's settings set to v (replaced when present).
func (s Settings) With(family string, v any) Settings {
	out := make([]familySettings, 0, len(s.list)+1)
	for _, f := range s.list {
		if f.family != family {
			out = append(out, f)
		}
	}
	return Settings{list: append(out, familySettings{family, v})}
}

// Len is the number of families with settings of their own.
func (s Settings) Len() int { return len(s.list) }

// SettingsOf returns the settings family filed in s, when they are a T.
func SettingsOf[T any](s Settings, family string) (T, bool) {
	for _, f := range s.list {
		if f.family == family {
			v, ok := f.v.(T)
			return v, ok
		}
	}
	var zero T
	return zero, false
}
