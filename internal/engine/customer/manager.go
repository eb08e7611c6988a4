package customer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/engine/config"
)

// Where a customer's definition comes from (Entry.Source).
const (
	SourceConfig = "config"
	SourceStore  = "store"
)

// Precedence is the one rule between the config file and the store, as
// the commands and the docs state it.
const Precedence = "a customer defined in the store replaces the config file's customer of the same id entirely; " +
	"the file's other customers apply as written (file order first, then the store's by id)"

// Entry is one customer of the effective directory.
type Entry struct {
	Customer config.Customer `json:"-"`
	Source   string          `json:"source"`
	// Shadows is true when a store definition replaces one in the file.
	Shadows bool `json:"shadows_config,omitempty"`
}

// FieldError is one validation error of a definition, naming its field
// (as in the config file: "logins[0]", "limits.messages_per_hour").
type FieldError struct {
	// Entry is the definition's index in an import's list (from 0).
	Entry    *int   `json:"entry,omitempty"`
	Customer string `json:"customer,omitempty"`
	Field    string `json:"field,omitempty"`
	Message  string `json:"message"`
}

// ValidationError is every error of a change; nothing was written.
type ValidationError []FieldError

func (v ValidationError) Error() string {
	lines := make([]string, len(v))
	for i, e := range v {
		var b strings.Builder
		if e.Entry != nil {
			fmt.Fprintf(&b, "customers[%d]: ", *e.Entry)
		}
		if e.Customer != "" {
			fmt.Fprintf(&b, "customer %s: ", e.Customer)
		}
		if e.Field != "" {
			b.WriteString(e.Field + ": ")
		}
		b.WriteString(e.Message)
		lines[i] = b.String()
	}
	return strings.Join(lines, "\n")
}

// Manager is the live customer directory: the config file's customers
// (the bootstrap) and the store's, merged by Precedence. Every gateway
// sharing the store runs one; Sync brings it up to the store's version.
// Changes are validated against the whole effective directory, exactly
// like the config file, before anything is written.
type Manager struct {
	s     Store
	opts  config.Options
	clock clock.Clock

	mu      sync.Mutex
	base    *config.Config
	baseIdx map[string]int // id -> index in base.Customers
	version int64
	live    map[string]config.Customer
	synced  bool

	// own indexes the effective directory's logins and networks (nil:
	// build it when next needed); a change is validated against it.
	own *owners
	// eff is the last effective config Effective returned (for effBase),
	// effIdx its customers' positions, and dirty the ids changed since:
	// only those are validated again.
	eff     *config.Config
	effBase *config.Config
	effIdx  map[string]int
	dirty   map[string]bool
	// pending are the ids changed since the last EffectiveUpdate
	// (pendingAll: everything), whoever called Effective in between.
	pending    map[string]bool
	pendingAll bool

	// forcedHook is told of every change synced that forced a rule.
	forcedHook atomic.Pointer[func(Change)]
}

// OnForced makes Sync call f (outside the manager's lock) for every
// change it applies whose definition's force: true waived a rule
// (Change.Forced): every gateway logs the forced changes it applies,
// whichever gateway or command made them.
func (m *Manager) OnForced(f func(Change)) { m.forcedHook.Store(&f) }

// NewManager manages the directory of store s over the config file base.
func NewManager(s Store, base *config.Config, opts config.Options, clk clock.Clock) *Manager {
	if clk == nil {
		clk = clock.System{}
	}
	return &Manager{s: s, base: base, baseIdx: index(base), opts: opts, clock: clk, live: map[string]config.Customer{}, dirty: map[string]bool{}, pending: map[string]bool{}, pendingAll: true}
}

func index(base *config.Config) map[string]int {
	m := make(map[string]int, len(base.Customers))
	for i, c := range base.Customers {
		m[c.ID] = i
	}
	return m
}

// SetBase installs a reloaded config file.
func (m *Manager) SetBase(base *config.Config) {
	idx := index(base)
	m.mu.Lock()
	m.base, m.baseIdx = base, idx
	m.own, m.eff = nil, nil
	m.mu.Unlock()
}

// Version is the store version the manager has applied.
func (m *Manager) Version() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.version
}

// Sync reads what changed in the store since the last Sync (the whole
// directory the first time, or when the change log no longer reaches
// back); changed reports whether anything did.
func (m *Manager) Sync(ctx context.Context) (changed bool, err error) {
	v, err := m.s.Version(ctx)
	if err != nil {
		return false, err
	}
	m.mu.Lock()
	cur, synced := m.version, m.synced
	m.mu.Unlock()
	if synced && v == cur {
		return false, nil
	}
	if synced && v > cur {
		cs, complete, err := m.s.Since(ctx, cur)
		if err != nil {
			return false, err
		}
		if complete {
			var forced []Change
			defer func() {
				if f := m.forcedHook.Load(); f != nil {
					for _, c := range forced {
						(*f)(c)
					}
				}
			}()
			m.mu.Lock()
			defer m.mu.Unlock()
			for _, c := range cs {
				if c.Version <= m.version {
					continue
				}
				if old, ok := m.effDef(c.ID); ok && m.own != nil {
					m.own.remove(old)
				}
				if len(c.Forced) > 0 {
					forced = append(forced, c)
				}
				if c.Op == OpRemove {
					delete(m.live, c.ID)
				} else if def, err := Decode(c.Definition); err == nil {
					m.live[c.ID] = def
				}
				if cur, ok := m.effDef(c.ID); ok && m.own != nil {
					m.own.add(cur)
				}
				m.dirty[c.ID] = true
				m.version = c.Version
			}
			return true, nil
		}
	}
	ver, all, err := m.s.All(ctx)
	if err != nil {
		return false, err
	}
	live := make(map[string]config.Customer, len(all))
	for id, raw := range all {
		// Each raw definition is let go once decoded: the directory is
		// not held twice while it is read back.
		delete(all, id)
		def, err := Decode(raw)
		if err != nil {
			continue // written by a newer version of aupguard: skipped, not fatal
		}
		live[id] = def
	}
	m.mu.Lock()
	m.live, m.version, m.synced = live, ver, true
	m.own, m.eff = nil, nil
	m.mu.Unlock()
	return true, nil
}

// effDef is a customer's effective definition (caller holds m.mu).
func (m *Manager) effDef(id string) (config.Customer, bool) {
	if c, ok := m.live[id]; ok {
		return c, true
	}
	if i, ok := m.baseIdx[id]; ok {
		return m.base.Customers[i], true
	}
	return config.Customer{}, false
}

// ensureOwners builds the ownership maps if needed (caller holds m.mu).
func (m *Manager) ensureOwners() {
	if m.own == nil {
		m.own = ownersOf(m.mergedList(m.live))
	}
}

// merged is the effective customer list and its entries (caller holds
// m.mu).
func (m *Manager) merged(live map[string]config.Customer) ([]config.Customer, []Entry) {
	entries := make([]Entry, 0, len(m.base.Customers)+len(live))
	list := m.mergedInto(live, func(c config.Customer, src string, shadows bool) {
		entries = append(entries, Entry{Customer: c, Source: src, Shadows: shadows})
	})
	return list, entries
}

// mergedList is the effective customer list alone (caller holds m.mu):
// a live change needs no entries, which would copy every customer again.
func (m *Manager) mergedList(live map[string]config.Customer) []config.Customer {
	return m.mergedInto(live, nil)
}

// mergedInto builds the effective list, telling each customer to entry
// when it is not nil.
func (m *Manager) mergedInto(live map[string]config.Customer, entry func(config.Customer, string, bool)) []config.Customer {
	list := make([]config.Customer, 0, len(m.base.Customers)+len(live))
	for _, c := range m.base.Customers {
		if lc, ok := live[c.ID]; ok {
			list = append(list, lc)
			if entry != nil {
				entry(lc, SourceStore, true)
			}
			continue
		}
		list = append(list, c)
		if entry != nil {
			entry(c, SourceConfig, false)
		}
	}
	ids := make([]string, 0, len(live))
	for id := range live {
		if _, inBase := m.baseIdx[id]; !inBase {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	for _, id := range ids {
		list = append(list, live[id])
		if entry != nil {
			entry(live[id], SourceStore, false)
		}
	}
	return list
}

// Effective returns the config file with the effective customer list,
// validated. An error means the file and the store conflict (e.g. a login
// claimed by a file customer and a store customer); it names both.
//
// The first call validates the whole list; later ones validate only the
// customers changed since (each on its own, then its logins and networks
// against the ownership maps of the others) and reuse the others' already
// validated definitions, so a change costs the changed customer plus a
// copy of the list.
func (m *Manager) Effective() (*config.Config, error) {
	cfg, _, err := m.effective(false)
	return cfg, err
}

// EffectiveUpdate is Effective, also returning the ids of the customers
// added, changed or removed since the config the last EffectiveUpdate
// returned (nil: everything, as at the first call, after a full resync
// or Invalidate), for customer.Directory.Update. One caller (the
// gateway's applier) uses it.
func (m *Manager) EffectiveUpdate() (*config.Config, map[string]bool, error) {
	return m.effective(true)
}

// Invalidate makes the next Effective validate everything and the next
// EffectiveUpdate report everything changed (after an apply failed).
func (m *Manager) Invalidate() {
	m.mu.Lock()
	m.eff = nil
	m.mu.Unlock()
}

func (m *Manager) effective(consume bool) (*config.Config, map[string]bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	cfg, changed, err := m.effectiveLocked()
	if err != nil {
		return nil, nil, err
	}
	if changed == nil {
		m.pendingAll = true
	}
	for id := range changed {
		m.pending[id] = true
	}
	if !consume {
		return cfg, nil, nil
	}
	out := m.pending
	if m.pendingAll {
		out = nil
	}
	m.pending, m.pendingAll = map[string]bool{}, false
	return cfg, out, nil
}

// effectiveLocked computes the effective config and what changed since
// the last one computed (caller holds m.mu).
func (m *Manager) effectiveLocked() (*config.Config, map[string]bool, error) {
	if (m.eff == nil || m.effBase != m.base) && len(m.live) == 0 {
		// The store adds nothing: the effective config is the file's,
		// validated by its Parse (no second copy of the list; the
		// ownership maps are built at the first change, ensureOwners).
		m.eff, m.effBase, m.effIdx, m.dirty = m.base, m.base, m.baseIdx, map[string]bool{}
		return m.base, nil, nil
	}
	list := m.mergedList(m.live)
	if m.eff == nil || m.effBase != m.base {
		cfg, err := m.base.WithCustomers(list, m.opts)
		if err != nil {
			return nil, nil, fieldErrors(err, list)
		}
		m.setEff(cfg)
		if m.own == nil {
			m.own = ownersOf(cfg.Customers)
		}
		return cfg, nil, nil
	}
	changed := make(map[string]bool, len(m.dirty))
	for id := range m.dirty {
		changed[id] = true
	}
	var sub []config.Customer
	var at []int
	for i := range list {
		id := list[i].ID
		if j, ok := m.effIdx[id]; ok && !m.dirty[id] {
			list[i] = m.eff.Customers[j]
			continue
		}
		sub = append(sub, list[i])
		at = append(at, i)
		changed[id] = true
	}
	if len(sub) > 0 {
		norm, err := m.base.WithCustomers(sub, m.opts)
		var errs ValidationError
		if err != nil {
			ve, ok := fieldErrors(err, sub).(ValidationError)
			if !ok {
				return nil, nil, err
			}
			errs = ve
		}
		m.ensureOwners()
		skip := make(map[string]bool, len(sub))
		for _, c := range sub {
			skip[c.ID] = true
		}
		for _, c := range sub {
			e, _ := m.own.conflicts(c, skip)
			errs = append(errs, e...)
		}
		if len(errs) > 0 {
			return nil, nil, errs
		}
		for k, i := range at {
			list[i] = norm.Customers[k]
		}
	}
	cfg := m.base.WithCheckedCustomers(list)
	m.setEff(cfg)
	return cfg, changed, nil
}

// setEff records the effective config returned (caller holds m.mu).
func (m *Manager) setEff(cfg *config.Config) {
	idx := make(map[string]int, len(cfg.Customers))
	for i, c := range cfg.Customers {
		idx[c.ID] = i
	}
	m.eff, m.effBase, m.effIdx, m.dirty = cfg, m.base, idx, map[string]bool{}
}

// List returns the effective directory.
func (m *Manager) List() []Entry {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, e := m.merged(m.live)
	return e
}

// Get returns one customer of the effective directory.
func (m *Manager) Get(id string) (Entry, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	i, inBase := m.baseIdx[id]
	if c, ok := m.live[id]; ok {
		return Entry{Customer: c, Source: SourceStore, Shadows: inBase}, true
	}
	if inBase {
		return Entry{Customer: m.base.Customers[i], Source: SourceConfig}, true
	}
	return Entry{}, false
}

// Add adds a new customer to the store. An id the file or the store
// already has is refused (use Set).
func (m *Manager) Add(ctx context.Context, c config.Customer, via string) (Change, error) {
	if _, ok := m.Get(c.ID); ok && c.ID != "" {
		return Change{}, ValidationError{{Customer: c.ID, Field: "id", Message: fmt.Sprintf("customer %q already exists (use set to change it)", c.ID)}}
	}
	cs, err := m.apply(ctx, []config.Customer{c}, OpAdd, via)
	if err != nil {
		return Change{}, err
	}
	return cs[0], nil
}

// Set changes a customer by a merge patch (RFC 7386) of its definition. A
// customer of the config file is copied into the store with the change
// (the store's definition then takes precedence).
func (m *Manager) Set(ctx context.Context, id string, patch map[string]any, via string) (Change, error) {
	e, ok := m.Get(id)
	if !ok {
		return Change{}, fmt.Errorf("%s: %w", id, ErrNotFound)
	}
	c, err := Patch(e.Customer, patch)
	if err != nil {
		return Change{}, ValidationError{{Customer: id, Message: err.Error()}}
	}
	c.ID = id
	cs, err := m.apply(ctx, []config.Customer{c}, OpSet, via)
	if err != nil {
		return Change{}, err
	}
	return cs[0], nil
}

// Replace sets a customer's whole definition (PUT): added when new.
func (m *Manager) Replace(ctx context.Context, c config.Customer, via string) (Change, error) {
	op := OpSet
	if _, ok := m.Get(c.ID); !ok {
		op = OpAdd
	}
	cs, err := m.apply(ctx, []config.Customer{c}, op, via)
	if err != nil {
		return Change{}, err
	}
	return cs[0], nil
}

// Import writes many definitions at once, all or none (a customer that
// exists is replaced). ImportFrom is the same for a stream.
func (m *Manager) Import(ctx context.Context, list []config.Customer, via string) (ImportResult, error) {
	return m.ImportFrom(ctx, &sliceSource{list: list}, via)
}

// sliceSource is an ImportSource over a list.
type sliceSource struct {
	list []config.Customer
	i    int
}

func (s *sliceSource) Next() (config.Customer, error) {
	if s.i == len(s.list) {
		return config.Customer{}, io.EOF
	}
	s.i++
	return s.list[s.i-1], nil
}

func (s *sliceSource) Raw() []byte { return nil }

// Remove deletes a customer from the store. A customer that only the
// config file defines cannot be removed here: it is removed from the file.
func (m *Manager) Remove(ctx context.Context, id, via string) (Change, error) {
	e, ok := m.Get(id)
	if !ok {
		return Change{}, fmt.Errorf("%s: %w", id, ErrNotFound)
	}
	if e.Source == SourceConfig {
		return Change{}, ValidationError{{Customer: id, Message: "defined in the config file only: remove it there"}}
	}
	if e.Shadows {
		// The file's definition comes back: it must not claim what
		// another customer has (checked against the ownership maps).
		m.mu.Lock()
		m.ensureOwners()
		errs, _ := m.own.conflicts(m.base.Customers[m.baseIdx[id]], nil)
		m.mu.Unlock()
		if len(errs) > 0 {
			return Change{}, errs
		}
	}
	cs, err := m.s.Apply(ctx, []Change{{Time: m.clock.Now().UTC(), Op: OpRemove, ID: id, Via: via}})
	if err != nil {
		return Change{}, err
	}
	_, _ = m.Sync(ctx)
	return cs[0], nil
}

// Log returns the newest changes (of one customer when id is not empty).
func (m *Manager) Log(ctx context.Context, id string, limit int) ([]Change, error) {
	if limit <= 0 {
		limit = 50
	}
	return m.s.Log(ctx, id, limit)
}

// apply validates the definitions against the effective directory with
// them in it, then writes them.
func (m *Manager) apply(ctx context.Context, defs []config.Customer, op, via string) ([]Change, error) {
	if _, err := m.Sync(ctx); err != nil {
		return nil, err
	}
	m.mu.Lock()
	seen := map[string]bool{}
	var dupErr ValidationError
	for i, d := range defs {
		if seen[d.ID] && d.ID != "" {
			dupErr = append(dupErr, FieldError{Customer: d.ID, Field: fmt.Sprintf("customers[%d].id", i), Message: "listed twice"})
		}
		seen[d.ID] = true
	}
	base := m.base
	old := make(map[string]config.Customer, len(defs))
	for _, d := range defs {
		if c, ok := m.live[d.ID]; ok {
			old[d.ID] = c
		} else if i, ok := m.baseIdx[d.ID]; ok {
			old[d.ID] = base.Customers[i]
		}
	}
	m.mu.Unlock()
	if len(dupErr) > 0 {
		return nil, dupErr
	}
	// Each definition on its own, exactly like the file's customers; then
	// what must be unique across customers (id, logins, networks) against
	// the ownership maps of the others: the cost of a change is the
	// changed customers', not the directory's.
	var errs ValidationError
	// forced are the rules each definition's force: true waived, for the
	// change log.
	forced := make([][]string, len(defs))
	norm, err := base.WithCustomers(defs, m.opts)
	if err != nil {
		ve, ok := fieldErrors(err, defs).(ValidationError)
		if !ok {
			return nil, err
		}
		errs = ve
	} else {
		for _, w := range norm.Warnings() {
			if k, field, ok := customerPath(w.Path); ok && k < len(defs) {
				forced[k] = append(forced[k], field+": "+w.Msg)
			}
		}
	}
	skip := make(map[string]bool, len(defs))
	for _, d := range defs {
		skip[d.ID] = true
	}
	m.mu.Lock()
	m.ensureOwners()
	for k, d := range defs {
		e, f := m.own.conflicts(d, skip)
		errs = append(errs, e...)
		for _, fe := range f {
			forced[k] = append(forced[k], fe.Field+": "+fe.Message)
		}
	}
	m.mu.Unlock()
	if len(errs) > 0 {
		return nil, errs
	}
	now := m.clock.Now().UTC()
	cs := make([]Change, len(defs))
	for i, d := range defs {
		raw, err := Encode(d)
		if err != nil {
			return nil, err
		}
		cs[i] = Change{Time: now, Op: op, ID: d.ID, Via: via, Definition: raw, Fields: changedFields(old[d.ID], d), Forced: forced[i]}
	}
	out, err := m.s.Apply(ctx, cs)
	if err != nil {
		return nil, err
	}
	_, _ = m.Sync(ctx)
	return out, nil
}

var indexPath = regexp.MustCompile(`^customers\[(\d+)\]\.?`)

// customerPath splits "customers[3].networks[0]" into 3 and "networks[0]".
func customerPath(p string) (int, string, bool) {
	m := indexPath.FindStringSubmatch(p)
	if m == nil {
		return 0, "", false
	}
	k, err := strconv.Atoi(m[1])
	return k, strings.TrimPrefix(p, m[0]), err == nil
}

// fieldErrors turns config errors on the merged list into errors naming
// the customer and its field.
func fieldErrors(err error, list []config.Customer) error {
	var es config.Errors
	if !errors.As(err, &es) {
		return err
	}
	out := make(ValidationError, 0, len(es))
	for _, e := range es {
		fe := FieldError{Field: e.Path, Message: e.Msg}
		if m := indexPath.FindStringSubmatch(e.Path); m != nil {
			if i, _ := strconv.Atoi(m[1]); i < len(list) {
				fe.Customer = list[i].ID
			}
			fe.Field = strings.TrimPrefix(e.Path, m[0])
		}
		out = append(out, fe)
	}
	return out
}

// Watch keeps the manager in step with the store: every interval it asks
// the store for its version and, when the directory is at another version
// than the one last applied (applied, at first), calls onChange with
// the manager synced. Changes made through this very manager count too. A
// store outage is retried at the next tick (the running directory stays).
// It returns when ctx is done.
func (m *Manager) Watch(ctx context.Context, interval time.Duration, applied int64, onChange func(), onError func(error)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := m.Sync(ctx); err != nil {
			if onError != nil && ctx.Err() == nil {
				onError(err)
			}
			continue
		}
		if v := m.Version(); v != applied {
			applied = v
			onChange()
		}
	}
}

// MarshalEntry renders an entry for the API: the definition with the
// config file's field names, and where it comes from.
func MarshalEntry(e Entry) (map[string]any, error) {
	m, err := toMap(e.Customer)
	if err != nil {
		return nil, err
	}
	return map[string]any{"customer": m, "source": e.Source, "shadows_config": e.Shadows}, nil
}

// MarshalJSON renders an entry as the admin API answers it (MarshalEntry).
func (e Entry) MarshalJSON() ([]byte, error) {
	m, err := MarshalEntry(e)
	if err != nil {
		return nil, err
	}
	return json.Marshal(m)
}

// UnmarshalJSON reads an entry as the admin API answers it; the customer
// is decoded like any definition (Decode).
func (e *Entry) UnmarshalJSON(b []byte) error {
	var raw struct {
		Customer json.RawMessage `json:"customer"`
		Source   string          `json:"source"`
		Shadows  bool            `json:"shadows_config"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	*e = Entry{Source: raw.Source, Shadows: raw.Shadows}
	if len(raw.Customer) == 0 || string(raw.Customer) == "null" {
		return nil
	}
	c, err := Decode(raw.Customer)
	if err != nil {
		return err
	}
	e.Customer = c
	return nil
}

// RawDefinition is a definition as the API and the commands print it.
func RawDefinition(c config.Customer) json.RawMessage {
	b, _ := Encode(c)
	return b
}

// Page returns limit entries of the effective directory from offset (in
// List's order) and how many there are; it copies only the page.
func (m *Manager) Page(offset, limit int) ([]Entry, int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ids := make([]string, 0, len(m.live))
	for id := range m.live {
		if _, inBase := m.baseIdx[id]; !inBase {
			ids = append(ids, id)
		}
	}
	nb := len(m.base.Customers)
	total := nb + len(ids)
	if offset >= total || limit <= 0 {
		return []Entry{}, total
	}
	end := min(offset+limit, total)
	out := make([]Entry, 0, end-offset)
	if offset < nb {
		for _, c := range m.base.Customers[offset:min(end, nb)] {
			if lc, ok := m.live[c.ID]; ok {
				out = append(out, Entry{Customer: lc, Source: SourceStore, Shadows: true})
			} else {
				out = append(out, Entry{Customer: c, Source: SourceConfig})
			}
		}
	}
	if end > nb {
		sort.Strings(ids)
		for _, id := range ids[max(offset-nb, 0) : end-nb] {
			out = append(out, Entry{Customer: m.live[id], Source: SourceStore})
		}
	}
	return out, total
}
