package customer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"

	"github.com/aupguard/aupguard/internal/engine/config"
)

// ImportResult says what an import applied: every customer it listed
// (Imported = Added + Replaced) at versions First to Last, or nothing
// (an error).
type ImportResult struct {
	Imported int   `json:"imported"`
	Added    int   `json:"added"`
	Replaced int   `json:"replaced"`
	First    int64 `json:"first_version,omitempty"`
	Last     int64 `json:"last_version,omitempty"`
}

// ErrVersionMoved is returned by Store.Import when the directory changed
// after the import was validated; nothing was written.
var ErrVersionMoved = errors.New("the customer directory changed during the import")

// ErrOutcomeUnknown is wrapped when the store could not say whether an
// import was written (it became unreachable while committing).
var ErrOutcomeUnknown = errors.New("the import's outcome is unknown")

// importChunk is how many definitions are validated together.
const importChunk = 1000

// staged is what a validated definition of an import claims, for the
// check against the rest of the directory once the whole list is known.
type staged struct {
	logins, networks []string
}

// ImportSource is what an import reads definitions from (*ImportReader).
type ImportSource interface {
	// Next returns the next definition; io.EOF after the last; an
	// *EntryError for one bad definition (reading goes on).
	Next() (config.Customer, error)
	// Raw is the last definition as compact JSON, or nil.
	Raw() []byte
}

// ImportFrom reads definitions from src until io.EOF and writes them all
// or none. The whole stream is validated first, in chunks, each
// definition exactly like the config file's and against the others of the
// import; then, the list complete, against the rest of the directory (a
// customer the import replaces does not count); then it is committed
// atomically (Store.Import). Errors (a ValidationError naming each
// entry, or the stream's) mean nothing was written. Memory holds the
// encoded definitions, never the input.
func (m *Manager) ImportFrom(ctx context.Context, src ImportSource, via string) (ImportResult, error) {
	var res ImportResult
	if _, err := m.Sync(ctx); err != nil {
		return res, err
	}
	m.mu.Lock()
	base := m.base
	m.mu.Unlock()
	var (
		errs    ValidationError
		changes []Change
		claims  []staged
		seen    = map[string]int{}
		own     = &owners{logins: map[string]string{}, nets: map[netip.Prefix]string{}}
		chunk   []config.Customer
		raws    [][]byte
		idx     []int
		now     = m.clock.Now().UTC()
	)
	full := func() bool { return len(errs) >= maxImportErrors }
	entryErr := func(i int, fe FieldError) {
		if !full() {
			j := i
			fe.Entry = &j
			errs = append(errs, fe)
		}
	}
	flush := func() error {
		if len(chunk) == 0 {
			return nil
		}
		bad := map[int]bool{}
		if _, err := base.WithCustomers(chunk, m.opts); err != nil {
			ve, ok := fieldErrors(err, chunk).(ValidationError)
			if !ok {
				return err
			}
			var es config.Errors
			errors.As(err, &es)
			for k, fe := range ve {
				i := -1
				if m := indexPath.FindStringSubmatch(es[k].Path); m != nil {
					fmt.Sscan(m[1], &i)
				}
				if i >= 0 && i < len(chunk) {
					bad[i] = true
					entryErr(idx[i], fe)
				} else {
					entryErr(idx[0], fe)
				}
			}
		}
		for k, c := range chunk {
			if bad[k] {
				continue
			}
			for _, fe := range own.conflicts(c, nil) {
				entryErr(idx[k], fe)
				bad[k] = true
			}
		}
		for k, c := range chunk {
			own.add(c)
			if bad[k] || len(errs) > 0 {
				continue
			}
			raw := raws[k]
			if raw == nil {
				var err error
				if raw, err = Encode(c); err != nil {
					return err
				}
			}
			ch := Change{Time: now, Op: OpImport, ID: c.ID, Via: via, Definition: raw}
			if old, ok := m.Get(c.ID); ok {
				ch.Fields = changedFields(old.Customer, c)
				res.Replaced++
			} else {
				res.Added++
			}
			changes = append(changes, ch)
			claims = append(claims, staged{logins: c.Logins, networks: c.Networks})
		}
		chunk, raws, idx = chunk[:0], raws[:0], idx[:0]
		return nil
	}
	for i := 0; !full(); i++ {
		c, err := src.Next()
		if err == io.EOF {
			break
		}
		var ee *EntryError
		if errors.As(err, &ee) {
			entryErr(ee.Index, FieldError{Message: ee.Error()})
			continue
		}
		if err != nil {
			return ImportResult{}, err
		}
		if err := ctx.Err(); err != nil {
			return ImportResult{}, err
		}
		if j, dup := seen[c.ID]; dup && c.ID != "" {
			entryErr(i, FieldError{Customer: c.ID, Field: "id", Message: fmt.Sprintf("listed twice (also customers[%d])", j)})
			continue
		}
		seen[c.ID] = i
		chunk = append(chunk, c)
		raws = append(raws, src.Raw())
		idx = append(idx, i)
		if len(chunk) == importChunk {
			if err := flush(); err != nil {
				return ImportResult{}, err
			}
		}
	}
	if err := flush(); err != nil {
		return ImportResult{}, err
	}
	if len(errs) > 0 {
		return ImportResult{}, errs
	}
	if len(changes) == 0 {
		return ImportResult{}, ValidationError{{Message: "no customer listed"}}
	}
	// The import replaces the customers it lists: they are skipped when
	// checking it against the rest of the directory. What only phase one
	// needed goes (the memory of an import peaks here).
	own, chunk, raws, idx = nil, nil, nil, nil
	skip := func(id string) bool { _, ok := seen[id]; return ok }
	for attempt := 0; ; attempt++ {
		m.mu.Lock()
		m.ensureOwners()
		expect := m.version
		for k := range changes {
			// Every entry is valid so far: changes[k] is entry k.
			c := config.Customer{ID: changes[k].ID, Logins: claims[k].logins, Networks: claims[k].networks}
			for _, fe := range m.own.conflictsExcept(c, skip) {
				entryErr(k, fe)
			}
		}
		m.mu.Unlock()
		if len(errs) > 0 {
			return ImportResult{}, errs
		}
		first, last, err := m.s.Import(ctx, expect, changes)
		if errors.Is(err, ErrVersionMoved) && attempt < 3 {
			// Another change came in between: check again against it.
			if _, err := m.Sync(ctx); err != nil {
				return ImportResult{}, err
			}
			continue
		}
		if err != nil {
			return ImportResult{}, err
		}
		res.Imported, res.First, res.Last = len(changes), first, last
		break
	}
	// The store is read back (Sync), the staged import no longer needed.
	changes, claims, seen = nil, nil, nil
	_, _ = m.Sync(ctx)
	return res, nil
}
