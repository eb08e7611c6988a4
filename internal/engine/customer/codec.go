package customer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/aupguard/aupguard/internal/engine/config"
)

// Decode reads one customer definition in JSON or YAML with the field
// names of the config file's customers[] entries; an unknown field is an
// error naming it (as in the file).
func Decode(data []byte) (config.Customer, error) {
	var c config.Customer
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		if errors.Is(err, io.EOF) {
			return c, ValidationError{{Message: "empty customer definition"}}
		}
		var te *yaml.TypeError
		if errors.As(err, &te) {
			var ve ValidationError
			for _, m := range te.Errors {
				ve = append(ve, typeError(m))
			}
			return c, ve
		}
		return c, ValidationError{{Message: strings.TrimPrefix(err.Error(), "yaml: ")}}
	}
	return c, nil
}

var (
	unknownField = regexp.MustCompile(`field (\S+) not found in type`)
	yamlLine     = regexp.MustCompile(`^line \d+: `)
)

// typeError turns one of yaml.v3's decoding messages into a field error.
func typeError(msg string) FieldError {
	if m := unknownField.FindStringSubmatch(msg); m != nil {
		return FieldError{Field: m[1], Message: "unknown field"}
	}
	return FieldError{Message: yamlLine.ReplaceAllString(msg, "")}
}

// Encode renders a customer definition as JSON with the config file's field
// names, leaving out what is not set.
func Encode(c config.Customer) ([]byte, error) {
	m, err := toMap(c)
	if err != nil {
		return nil, err
	}
	return json.Marshal(m)
}

// toMap is the definition as a tree of maps (YAML field names), without
// empty values.
func toMap(c config.Customer) (map[string]any, error) {
	y, err := yaml.Marshal(c)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := yaml.Unmarshal(y, &m); err != nil {
		return nil, err
	}
	prune(m)
	return m, nil
}

func prune(m map[string]any) {
	for k, v := range m {
		switch x := v.(type) {
		case nil:
			delete(m, k)
		case string:
			if x == "" {
				delete(m, k)
			}
		case []any:
			if len(x) == 0 {
				delete(m, k)
			}
		case map[string]any:
			prune(x)
			if len(x) == 0 {
				delete(m, k)
			}
		}
	}
}

// fromMap is the inverse of toMap, validated for unknown fields.
func fromMap(m map[string]any) (config.Customer, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return config.Customer{}, err
	}
	return Decode(b)
}

// Patch applies a JSON merge patch (RFC 7386) to a definition: a member
// set to null is removed, an object is merged member by member, anything
// else replaces. The id cannot change.
func Patch(c config.Customer, patch map[string]any) (config.Customer, error) {
	m, err := toMap(c)
	if err != nil {
		return c, err
	}
	if id, ok := patch["id"]; ok && id != c.ID {
		return c, errors.New("id: cannot be changed (remove the customer and add it again)")
	}
	mergePatch(m, patch)
	return fromMap(m)
}

func mergePatch(dst, patch map[string]any) {
	for k, v := range patch {
		switch pv := v.(type) {
		case nil:
			delete(dst, k)
		case map[string]any:
			d, ok := dst[k].(map[string]any)
			if !ok {
				d = map[string]any{}
			}
			mergePatch(d, pv)
			dst[k] = d
		default:
			dst[k] = v
		}
	}
}

// SetPath builds the merge patch that sets one dotted field
// ("limits.messages_per_hour") to a value written in YAML ("200",
// "[a, b]", "monitor"); an empty value with unset removes the field.
func SetPath(patch map[string]any, field, value string, unset bool) error {
	if field == "" {
		return errors.New("empty field name")
	}
	parts := strings.Split(field, ".")
	m := patch
	for _, p := range parts[:len(parts)-1] {
		if p == "" {
			return fmt.Errorf("%s: bad field name", field)
		}
		next, ok := m[p].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[p] = next
		}
		m = next
	}
	last := parts[len(parts)-1]
	if unset {
		m[last] = nil
		return nil
	}
	var v any
	if err := yaml.Unmarshal([]byte(value), &v); err != nil {
		return fmt.Errorf("%s: bad value %q: %v", field, value, err)
	}
	if v == nil {
		v = ""
	}
	m[last] = v
	return nil
}

// changedFields lists the top-level fields that differ between two
// definitions (for the change log).
func changedFields(a, b config.Customer) []string {
	ma, _ := toMap(a)
	mb, _ := toMap(b)
	var out []string
	for k, v := range mb {
		if !equalJSON(ma[k], v) {
			out = append(out, k)
		}
	}
	for k := range ma {
		if _, ok := mb[k]; !ok {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

func equalJSON(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

// DecodeList reads {"customers": [...]} (JSON) or a YAML file with a
// customers: section, as for the config file; errors name the entry.
func DecodeList(data []byte) ([]config.Customer, error) {
	var doc struct {
		Customers []yaml.Node `yaml:"customers"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	if len(doc.Customers) == 0 {
		return nil, errors.New("customers: no customer listed")
	}
	out := make([]config.Customer, 0, len(doc.Customers))
	var errs []string
	for i := range doc.Customers {
		b, err := yaml.Marshal(&doc.Customers[i])
		if err == nil {
			var c config.Customer
			if c, err = Decode(b); err == nil {
				out = append(out, c)
				continue
			}
		}
		errs = append(errs, fmt.Sprintf("customers[%d] (line %d): %v", i, doc.Customers[i].Line, err))
	}
	if len(errs) > 0 {
		return nil, errors.New(strings.Join(errs, "; "))
	}
	return out, nil
}
