package customer

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/aupguard/aupguard/internal/atomicfile"
	"github.com/aupguard/aupguard/internal/store"
)

// Change operations.
const (
	OpAdd    = "add"
	OpSet    = "set"
	OpRemove = "remove"
	OpImport = "import"
)

// Interfaces a change can come through (Change.Via).
const (
	ViaCLI = "cli"
	ViaAPI = "api"
)

// LogSize is how many changes the store keeps (the change log shown in the
// console; a gateway further behind than that reloads the whole directory).
const LogSize = 10000

// Change is one entry of the directory's change log.
type Change struct {
	// Version is the directory's version after the change.
	Version int64     `json:"version"`
	Time    time.Time `json:"time"`
	Op      string    `json:"op"`
	ID      string    `json:"id"`
	// Via is the interface the change came through: cli or api.
	Via string `json:"via"`
	// Fields are the top-level fields the change touched.
	Fields []string `json:"fields,omitempty"`
	// Forced are the rules the definition's force: true waived ("networks[0]:
	// forced: network 10.0.0.0/8 is broader than ..."), each also logged
	// as a warning where the change was made.
	Forced []string `json:"forced,omitempty"`
	// Definition is the new definition (JSON, config field names); empty
	// for a removal.
	Definition json.RawMessage `json:"definition,omitempty"`
}

// ErrExists and ErrNotFound are the store's refusals of add and remove.
var (
	ErrExists   = errors.New("customer already exists")
	ErrNotFound = errors.New("no such customer")
)

// Store holds the live customer definitions shared by every gateway, a
// version counter bumped by every change, and the change log.
type Store interface {
	// Version is the directory's current version (0: never changed).
	Version(ctx context.Context) (int64, error)
	// All returns every definition by id, with the version they are at.
	All(ctx context.Context) (int64, map[string]json.RawMessage, error)
	// Since returns the changes after version, oldest first; complete is
	// false when the log no longer reaches back that far.
	Since(ctx context.Context, version int64) (changes []Change, complete bool, err error)
	// Apply writes changes atomically, in order; each gets its version.
	// An add of an id the store has fails with ErrExists, a removal of one
	// it has not with ErrNotFound, and then nothing is written.
	Apply(ctx context.Context, changes []Change) ([]Change, error)
	// Log returns the newest changes, of one customer when id is not
	// empty, newest first, at most limit.
	Log(ctx context.Context, id string, limit int) ([]Change, error)
	// Import writes a bulk import's changes (adds or replacements)
	// atomically when the directory is still at version expect, and
	// returns the versions of the first and last; ErrVersionMoved, and
	// nothing written, when it is not. Whatever it returns is the truth:
	// an error means nothing was written, except one wrapping
	// ErrOutcomeUnknown (the store became unreachable while committing).
	Import(ctx context.Context, expect int64, changes []Change) (first, last int64, err error)
}

// OpenStore returns the directory store of a store handle: Redis keys under
// the handle's prefix, or the memory backend (persisted under store.path).
func OpenStore(h *store.Handle) (Store, error) {
	if h.Client != nil {
		return &redisStore{h: h}, nil
	}
	v, err := h.Shared("customers", func() (any, error) { return newMemoryStore(h.Path) })
	if err != nil {
		return nil, err
	}
	return v.(*memoryStore), nil
}

// memoryStore is the directory of a single MTA, kept in the gateway's
// process and, with store.path, in a file rewritten on every change.
type memoryStore struct {
	mu      sync.Mutex
	file    string
	Ver     int64                      `json:"version"`
	Defs    map[string]json.RawMessage `json:"customers"`
	Changes []Change                   `json:"log"` // oldest first
}

func newMemoryStore(dir string) (*memoryStore, error) {
	m := &memoryStore{Defs: map[string]json.RawMessage{}}
	if dir == "" {
		return m, nil
	}
	m.file = filepath.Join(dir, "customers.json")
	if err := atomicfile.ReadJSON(m.file, m); err != nil {
		return nil, fmt.Errorf("customer directory: %w", err)
	}
	if m.Defs == nil {
		m.Defs = map[string]json.RawMessage{}
	}
	return m, nil
}

func (m *memoryStore) Version(context.Context) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.Ver, nil
}

func (m *memoryStore) All(context.Context) (int64, map[string]json.RawMessage, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]json.RawMessage, len(m.Defs))
	for k, v := range m.Defs {
		out[k] = v
	}
	return m.Ver, out, nil
}

func (m *memoryStore) Since(_ context.Context, v int64) ([]Change, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if v >= m.Ver {
		return nil, true, nil
	}
	i := sort.Search(len(m.Changes), func(i int) bool { return m.Changes[i].Version > v })
	out := append([]Change(nil), m.Changes[i:]...)
	complete := len(out) > 0 && out[0].Version == v+1
	return out, complete, nil
}

func (m *memoryStore) Apply(_ context.Context, cs []Change) ([]Change, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	exists := func(id string) bool { _, ok := m.Defs[id]; return ok }
	for _, c := range cs {
		if c.Op == OpAdd && exists(c.ID) {
			return nil, fmt.Errorf("%s: %w", c.ID, ErrExists)
		}
		if c.Op == OpRemove && !exists(c.ID) {
			return nil, fmt.Errorf("%s: %w", c.ID, ErrNotFound)
		}
	}
	out := make([]Change, len(cs))
	for i, c := range cs {
		m.Ver++
		c.Version = m.Ver
		if c.Op == OpRemove {
			delete(m.Defs, c.ID)
		} else {
			m.Defs[c.ID] = c.Definition
		}
		m.Changes = append(m.Changes, c)
		out[i] = c
	}
	if n := len(m.Changes) - LogSize; n > 0 {
		m.Changes = append([]Change(nil), m.Changes[n:]...)
	}
	return out, m.persist()
}

func (m *memoryStore) Import(_ context.Context, expect int64, cs []Change) (int64, int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.Ver != expect {
		return 0, 0, ErrVersionMoved
	}
	first := m.Ver + 1
	for _, c := range cs {
		m.Ver++
		c.Version = m.Ver
		m.Defs[c.ID] = c.Definition
		m.Changes = append(m.Changes, c)
	}
	if n := len(m.Changes) - LogSize; n > 0 {
		m.Changes = append([]Change(nil), m.Changes[n:]...)
	}
	if err := m.persist(); err != nil {
		// The file keeps the directory as it was: so does the process.
		m.reload()
		return 0, 0, err
	}
	return first, m.Ver, nil
}

// reload reads the file back after a failed persist (caller holds m.mu).
func (m *memoryStore) reload() {
	b, err := os.ReadFile(m.file)
	fresh := &memoryStore{Defs: map[string]json.RawMessage{}}
	if err == nil {
		_ = json.Unmarshal(b, fresh)
	}
	if fresh.Defs == nil {
		fresh.Defs = map[string]json.RawMessage{}
	}
	m.Ver, m.Defs, m.Changes = fresh.Ver, fresh.Defs, fresh.Changes
}

// persist rewrites the file atomically (atomicfile.Write).
func (m *memoryStore) persist() error {
	if m.file == "" {
		return nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if err := atomicfile.Write(m.file, b); err != nil {
		return fmt.Errorf("customer directory: %w", err)
	}
	return nil
}

func (m *memoryStore) Log(_ context.Context, id string, limit int) ([]Change, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Change
	for i := len(m.Changes) - 1; i >= 0 && len(out) < limit; i-- {
		if id == "" || m.Changes[i].ID == id {
			out = append(out, m.Changes[i])
		}
	}
	return out, nil
}

// redisStore keeps the directory in three keys sharing one hash tag (one
// Cluster slot, so the apply script may touch them all): a hash of
// definitions, the version counter and the change log (a list, newest
// first, each entry "VERSION JSON").
type redisStore struct{ h *store.Handle }

func (r *redisStore) keys() []string {
	return []string{r.h.Prefix + "{dir}:customers", r.h.Prefix + "{dir}:version", r.h.Prefix + "{dir}:log"}
}

func (r *redisStore) Version(ctx context.Context) (int64, error) {
	ctx, cancel := r.h.Context(ctx)
	defer cancel()
	v, err := r.h.Client.Get(ctx, r.keys()[1]).Int64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	return v, store.Unavailable(err)
}

func (r *redisStore) All(ctx context.Context) (int64, map[string]json.RawMessage, error) {
	k := r.keys()
	// Definitions and version read in one transaction: a consistent view.
	var hall *redis.MapStringStringCmd
	var ver *redis.StringCmd
	_, err := r.h.Client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		hall = p.HGetAll(ctx, k[0])
		ver = p.Get(ctx, k[1])
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return 0, nil, store.Unavailable(err)
	}
	v, _ := ver.Int64()
	out := make(map[string]json.RawMessage, len(hall.Val()))
	for id, def := range hall.Val() {
		out[id] = json.RawMessage(def)
	}
	return v, out, nil
}

func parseEntry(s string) (Change, error) {
	vs, js, ok := strings.Cut(s, " ")
	var c Change
	if !ok {
		return c, errors.New("bad change log entry")
	}
	if err := json.Unmarshal([]byte(js), &c); err != nil {
		return c, err
	}
	c.Version, _ = strconv.ParseInt(vs, 10, 64)
	return c, nil
}

func (r *redisStore) Since(ctx context.Context, v int64) ([]Change, bool, error) {
	k := r.keys()
	var out []Change
	const page = 256
	for start := int64(0); start < LogSize; start += page {
		ctx2, cancel := r.h.Context(ctx)
		entries, err := r.h.Client.LRange(ctx2, k[2], start, start+page-1).Result()
		cancel()
		if err != nil {
			return nil, false, store.Unavailable(err)
		}
		for _, e := range entries {
			c, err := parseEntry(e)
			if err != nil {
				continue
			}
			if c.Version <= v {
				reverse(out)
				return out, len(out) == 0 || out[0].Version == v+1, nil
			}
			out = append(out, c)
		}
		if len(entries) < page {
			break
		}
	}
	reverse(out)
	return out, len(out) > 0 && out[0].Version == v+1, nil
}

func reverse(cs []Change) {
	for i, j := 0, len(cs)-1; i < j; i, j = i+1, j-1 {
		cs[i], cs[j] = cs[j], cs[i]
	}
}

// applyScript checks every add and removal first, then writes each change,
// bumps the version and logs it; all or nothing (a script runs atomically).
// ARGV: log size, then per change: op, id, definition, log entry JSON.
var applyScript = redis.NewScript(`
local n = (#ARGV - 1) / 4
for i = 0, n - 1 do
  local op, id = ARGV[2 + i*4], ARGV[3 + i*4]
  local has = redis.call('HEXISTS', KEYS[1], id) == 1
  if op == 'add' and has then return {-1, id} end
  if op == 'remove' and not has then return {-2, id} end
end
local vers = {}
for i = 0, n - 1 do
  local op, id, def, entry = ARGV[2 + i*4], ARGV[3 + i*4], ARGV[4 + i*4], ARGV[5 + i*4]
  if op == 'remove' then redis.call('HDEL', KEYS[1], id) else redis.call('HSET', KEYS[1], id, def) end
  local v = redis.call('INCR', KEYS[2])
  redis.call('LPUSH', KEYS[3], v .. ' ' .. entry)
  vers[#vers + 1] = v
end
redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[1]) - 1)
return {0, vers}
`)

func (r *redisStore) Apply(ctx context.Context, cs []Change) ([]Change, error) {
	args := []any{LogSize}
	for _, c := range cs {
		e, err := json.Marshal(c)
		if err != nil {
			return nil, err
		}
		args = append(args, c.Op, c.ID, string(c.Definition), string(e))
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	res, err := applyScript.Run(ctx, r.h.Client, r.keys(), args...).Slice()
	if err != nil {
		return nil, store.Unavailable(err)
	}
	if len(res) != 2 {
		return nil, errors.New("customer directory: unexpected reply")
	}
	switch code, _ := res[0].(int64); code {
	case -1:
		return nil, fmt.Errorf("%v: %w", res[1], ErrExists)
	case -2:
		return nil, fmt.Errorf("%v: %w", res[1], ErrNotFound)
	}
	vers, _ := res[1].([]any)
	out := make([]Change, len(cs))
	for i, c := range cs {
		if i < len(vers) {
			c.Version, _ = vers[i].(int64)
		}
		out[i] = c
	}
	return out, nil
}

func (r *redisStore) Log(ctx context.Context, id string, limit int) ([]Change, error) {
	ctx, cancel := r.h.Context(ctx)
	defer cancel()
	entries, err := r.h.Client.LRange(ctx, r.keys()[2], 0, LogSize-1).Result()
	if err != nil {
		return nil, store.Unavailable(err)
	}
	var out []Change
	for _, e := range entries {
		if len(out) >= limit {
			break
		}
		c, err := parseEntry(e)
		if err != nil || (id != "" && c.ID != id) {
			continue
		}
		out = append(out, c)
	}
	return out, nil
}

// importStageChunk is how many definitions one staging command carries.
const importStageChunk = 1000

// importStageTTL bounds how long an abandoned staging area lives.
const importStageTTL = time.Hour

// importCommitTimeout bounds the wait for the commit script's answer
// (a variable for the test of a commit that gets none).
var importCommitTimeout = 2 * time.Minute

// beforeCommit, when set (tests), runs between staging and the commit.
var beforeCommit func()

// commitScript moves a staged import into the directory, all or nothing:
// it refuses when the directory is not at the expected version (ARGV[1])
// or the staging area is not complete (ARGV[3] log entries: expired, or
// aborted by abortScript), then copies the staged definitions in chunks,
// bumps the version once per customer, logs the newest changes (the log
// keeps ARGV[2]), and leaves a marker (KEYS[6], the first version) that
// says the import was applied.
// KEYS: customers, version, log, stage definitions, stage log, marker.
var commitScript = redis.NewScript(`
local cur = tonumber(redis.call('GET', KEYS[2]) or '0')
if cur ~= tonumber(ARGV[1]) then return {-3, cur} end
local n = tonumber(ARGV[3])
if redis.call('LLEN', KEYS[5]) ~= n then return {-4, 0} end
local cursor = '0'
repeat
  local r = redis.call('HSCAN', KEYS[4], cursor, 'COUNT', 500)
  cursor = r[1]
  local kv = r[2]
  for i = 1, #kv, 1000 do
    local last = math.min(i + 999, #kv)
    redis.call('HSET', KEYS[1], unpack(kv, i, last))
  end
until cursor == '0'
local first = cur + 1
redis.call('SET', KEYS[2], cur + n)
local keep = tonumber(ARGV[2])
local from = 0
if n > keep then from = n - keep end
local entries = redis.call('LRANGE', KEYS[5], from, -1)
local batch = {}
for i, e in ipairs(entries) do
  batch[#batch + 1] = (first + from + i - 1) .. ' ' .. e
  if #batch == 500 then redis.call('LPUSH', KEYS[3], unpack(batch)); batch = {} end
end
if #batch > 0 then redis.call('LPUSH', KEYS[3], unpack(batch)) end
redis.call('LTRIM', KEYS[3], 0, keep - 1)
redis.call('DEL', KEYS[4], KEYS[5])
redis.call('SET', KEYS[6], first, 'EX', tonumber(ARGV[4]))
return {0, first}
`)

// abortScript settles an import whose commit got no answer: applied when
// the marker is there, else its staging area is deleted so that a commit
// still on its way finds it incomplete and writes nothing.
// KEYS: stage definitions, stage log, marker.
var abortScript = redis.NewScript(`
local first = redis.call('GET', KEYS[3])
if first then return tonumber(first) end
redis.call('DEL', KEYS[1], KEYS[2])
return 0
`)

// Import stages the definitions under keys of their own (invisible to
// readers), then commits them with one script. A failure while staging
// leaves the directory untouched. A commit that gets no answer is settled
// by abortScript, so the answer is the truth; only when the store stays
// unreachable is the outcome unknown (ErrOutcomeUnknown).
func (r *redisStore) Import(ctx context.Context, expect int64, cs []Change) (int64, int64, error) {
	var nonce [12]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return 0, 0, err
	}
	k := r.keys()
	tag := r.h.Prefix + "{dir}:import:" + hex.EncodeToString(nonce[:])
	stage := []string{tag + ":defs", tag + ":log", tag + ":applied"}
	cleanup := func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		r.h.Client.Del(dctx, stage[0], stage[1])
	}
	for start := 0; start < len(cs); start += importStageChunk {
		end := min(start+importStageChunk, len(cs))
		defs := make([]any, 0, 2*(end-start))
		entries := make([]any, 0, end-start)
		for _, c := range cs[start:end] {
			e, err := json.Marshal(c)
			if err != nil {
				cleanup()
				return 0, 0, err
			}
			defs = append(defs, c.ID, string(c.Definition))
			entries = append(entries, string(e))
		}
		sctx, cancel := r.h.Context(ctx)
		_, err := r.h.Client.Pipelined(sctx, func(p redis.Pipeliner) error {
			p.HSet(sctx, stage[0], defs...)
			p.RPush(sctx, stage[1], entries...)
			p.Expire(sctx, stage[0], importStageTTL)
			p.Expire(sctx, stage[1], importStageTTL)
			return nil
		})
		cancel()
		if err != nil {
			cleanup()
			return 0, 0, store.Unavailable(err)
		}
	}
	// From here the request's end must not stop the commit half-way
	// through knowing its outcome.
	if beforeCommit != nil {
		beforeCommit()
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), importCommitTimeout)
	defer cancel()
	keys := []string{k[0], k[1], k[2], stage[0], stage[1], stage[2]}
	res, err := commitScript.Run(cctx, r.h.Client, keys, expect, LogSize, len(cs), int(importStageTTL.Seconds())).Int64Slice()
	if err != nil {
		first, serr := r.settle(ctx, stage)
		if serr != nil {
			return 0, 0, fmt.Errorf("%w: %v (then %v)", ErrOutcomeUnknown, err, serr)
		}
		if first == 0 {
			return 0, 0, store.Unavailable(fmt.Errorf("import not applied: %w", err))
		}
		return first, first + int64(len(cs)) - 1, nil
	}
	switch {
	case len(res) != 2:
		cleanup()
		return 0, 0, errors.New("customer directory: unexpected reply")
	case res[0] == -3:
		cleanup()
		return 0, 0, ErrVersionMoved
	case res[0] == -4:
		cleanup()
		return 0, 0, errors.New("customer directory: the staged import expired before its commit")
	}
	return res[1], res[1] + int64(len(cs)) - 1, nil
}

// settle asks the store whether a commit that got no answer was applied
// (its first version) or not (0, and it never will be), retrying for a
// few seconds.
func (r *redisStore) settle(ctx context.Context, stage []string) (int64, error) {
	var err error
	for i := 0; i < 5; i++ {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		var first int64
		first, err = abortScript.Run(sctx, r.h.Client, stage).Int64()
		cancel()
		if err == nil {
			return first, nil
		}
		time.Sleep(time.Duration(i+1) * 200 * time.Millisecond)
	}
	return 0, err
}
