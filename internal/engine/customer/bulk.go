package customer

import (
	"context"
	"errors"
	"fmt"
	"io"

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
	// Forced lists, per customer, the rules its force: true waived
	// (also in each change's Forced and the change log).
	Forced []ImportForced `json:"forced,omitempty"`
}

// ImportForced is the rules an import waived for one customer.
type ImportForced struct {
	Customer string   `json:"customer"`
	Forced   []string `json:"forced"`
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
	// claim holds the definition's id, force, logins, networks and
	// domains: what the claims index checks.
	claim config.Customer
	// own is how many of the change's Forced the definition alone and
	// the rest of the import waived (before the directory's).
	own int
}

// ImportSource is what an import reads definitions from (*ImportReader).
type ImportSource interface {
	// Next returns the next definition; io.EOF after the last; an
	// *EntryError for one bad definition (reading goes on).
	Next() (config.Customer, error)
	// Raw is the last definition as compact JSON, or nil.
	Raw() []byte
}

// ForceAll makes every definition src yields forced (force: true), as
// -force and ?force=1 ask: a directory rule it breaks is waived and
// reported (ImportResult.Forced) instead of refusing the import.
func ForceAll(src ImportSource) ImportSource { return &forceSource{src: src} }

type forceSource struct {
	src ImportSource
	set bool // force was set on the last definition
}

func (f *forceSource) Next() (config.Customer, error) {
	c, err := f.src.Next()
	f.set = err == nil && !c.Force
	if err == nil {
		c.Force = true
	}
	return c, err
}

// Raw is nil for a definition force was set on: it is encoded again, so
// that what is stored says force: true (every gateway reading it back
// must see the waiver).
func (f *forceSource) Raw() []byte {
	if f.set {
		return nil
	}
	return f.src.Raw()
}

// ImportFrom reads definitions from src until io.EOF and writes them all
// or none. The whole stream is validated first, in chunks, each
// definition exactly like the config file's and against the others of the
// import, with the directory rules of every other write (a rule an
// entry's force: true waives is reported in ImportResult.Forced); then,
// the list complete, against the rest of the directory (a customer the
// import replaces does not count); then it is committed
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
		own     = ownersOf(nil)
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
		forced := make([][]string, len(chunk))
		if norm, err := base.WithCustomers(chunk, m.opts); err == nil {
			for _, w := range norm.Warnings() {
				if k, field, ok := customerPath(w.Path); ok && k < len(chunk) {
					forced[k] = append(forced[k], field+": "+w.Msg)
				}
			}
		} else {
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
			e, f := own.conflicts(c, nil)
			for _, fe := range e {
				entryErr(idx[k], fe)
				bad[k] = true
			}
			for _, fe := range f {
				forced[k] = append(forced[k], fe.Field+": "+fe.Message)
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
			ch := Change{Time: now, Op: OpImport, ID: c.ID, Via: via, Definition: raw, Forced: forced[k]}
			if old, ok := m.Get(c.ID); ok {
				ch.Fields = changedFields(old.Customer, c)
				res.Replaced++
			} else {
				res.Added++
			}
			changes = append(changes, ch)
			claims = append(claims, staged{claim: config.Customer{ID: c.ID, Force: c.Force, Logins: c.Logins, Networks: c.Networks, Domains: c.Domains}, own: len(forced[k])})
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
			// Every entry is valid so far: changes[k] is entry k. The
			// waivers against the directory are those of this attempt.
			e, f := m.own.conflictsExcept(claims[k].claim, skip)
			for _, fe := range e {
				entryErr(k, fe)
			}
			changes[k].Forced = changes[k].Forced[:claims[k].own]
			for _, fe := range f {
				changes[k].Forced = append(changes[k].Forced, fe.Field+": "+fe.Message)
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
		for _, c := range changes {
			if len(c.Forced) > 0 {
				res.Forced = append(res.Forced, ImportForced{Customer: c.ID, Forced: c.Forced})
			}
		}
		break
	}
	// The store is read back (Sync), the staged import no longer needed.
	changes, claims, seen = nil, nil, nil
	_, _ = m.Sync(ctx)
	return res, nil
}
