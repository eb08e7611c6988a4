// Package batch is the store's batch: the store work of one stage of one
// transaction, added by every check that needs the store at that stage
// and run in one round trip (Redis: one EVALSHA of the script of the
// families' procs; memory: Go functions in order). It sits below the
// policy engine, which hands each stage's *Batch to the checks, and below
// package store, which opens the Redis client a Runner runs on. Each family
// keeps its Lua as files in its own folder (go:embed) and registers them
// on the store at setup (Runner.Register).
package batch

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"

	"github.com/redis/go-redis/v9"
)

// ErrUnavailable wraps every store failure, so that callers can tell a
// store outage (which becomes the configured on_error) from a bug.
var ErrUnavailable = errors.New("store unavailable")

// Unavailable wraps a Redis error as ErrUnavailable (nil stays nil; a
// missing key is not an outage).
func Unavailable(err error) error {
	if err == nil || errors.Is(err, redis.Nil) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

// LibFile is the name of a family's Lua library file: its local functions
// are visible to every proc and script of the family, and to no other
// family's.
const LibFile = "lib.lua"

// Proc is one kind of store work a family contributes to a stage's batch:
// on Redis a Lua function of (KEYS, ARGV) in the batch script.
type Proc struct {
	name string
	body string
	arg  any // name as a script argument, boxed once
	lua  *Lua
}

// Name returns the proc's name: the family, a dot, the file's base name.
func (p *Proc) Name() string { return p.name }

// Lua is one family's Lua: every .lua file of its folder but lib.lua is a
// proc (a function of the batch script) and a stand-alone script (for
// work outside a stage's batch), both with lib.lua's functions in scope.
type Lua struct {
	family  string
	lib     string
	procs   map[string]*Proc
	scripts map[string]*redis.Script
}

// ReadLua reads a family's Lua files from fsys: every *.lua file at its
// root (a family embeds its lua folder and passes fs.Sub of it). Proc
// bodies must return a value Redis can reply with (a table, a number or a
// string, never nil) and may call store_now() for the server's time in ms
// (one TIME per batch; in a stand-alone script, the script's own TIME).
// All keys of one call must hash to one Cluster slot (a customer's hash
// tag); a read outside it goes beside the script (Batch.Side).
func ReadLua(family string, fsys fs.FS) (*Lua, error) {
	if family == "" || strings.ContainsAny(family, ".\"\\\n") {
		return nil, fmt.Errorf("batch: bad family name %q", family)
	}
	files, err := fs.Glob(fsys, "*.lua")
	if err != nil {
		return nil, fmt.Errorf("batch: %s: %w", family, err)
	}
	l := &Lua{family: family, procs: map[string]*Proc{}, scripts: map[string]*redis.Script{}}
	bodies := map[string]string{}
	for _, f := range files {
		b, err := fs.ReadFile(fsys, f)
		if err != nil {
			return nil, fmt.Errorf("batch: %s: %w", family, err)
		}
		if f == LibFile {
			l.lib = string(b)
			continue
		}
		base := strings.TrimSuffix(path.Base(f), ".lua")
		if base == "" || strings.ContainsAny(base, ".\"\\") {
			return nil, fmt.Errorf("batch: %s: bad proc file name %q", family, f)
		}
		bodies[base] = string(b)
	}
	if len(bodies) == 0 {
		return nil, fmt.Errorf("batch: %s: no .lua files", family)
	}
	for base, body := range bodies {
		name := family + "." + base
		l.procs[base] = &Proc{name: name, body: body, arg: name, lua: l}
		l.scripts[base] = redis.NewScript(standaloneHead + l.lib + "\n" + body)
	}
	return l, nil
}

// Family returns the family's name.
func (l *Lua) Family() string { return l.family }

// Proc returns the proc of the file base.lua, or nil when there is none
// (a family's own test finds the typo).
func (l *Lua) Proc(base string) *Proc { return l.procs[base] }

// Script returns the file base.lua as a stand-alone script (library
// first), or nil when there is none.
func (l *Lua) Script(base string) *redis.Script { return l.scripts[base] }

// Scripts returns every stand-alone script of the family, for
// store.Handle.LoadScripts.
func (l *Lua) Scripts() []*redis.Script {
	out := make([]*redis.Script, 0, len(l.scripts))
	for _, n := range l.names() {
		out = append(out, l.scripts[n])
	}
	return out
}

func (l *Lua) names() []string {
	out := make([]string, 0, len(l.procs))
	for n := range l.procs {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// same reports whether l and o have the same files.
func (l *Lua) same(o *Lua) bool {
	if l.lib != o.lib || len(l.procs) != len(o.procs) {
		return false
	}
	for n, p := range l.procs {
		if q, ok := o.procs[n]; !ok || q.body != p.body {
			return false
		}
	}
	return true
}

// standaloneHead gives a stand-alone script the store_now of the batch
// script.
const standaloneHead = `local function store_now()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
`

// writeScript writes the batch script of the families' Lua: store_now,
// then per family (sorted) a block with its library and its procs as
// functions of the table P, then the dispatcher. ARGV[1] is the number of
// calls n; ARGV[2..1+3n] are, per call, the proc's name and the number of
// its keys and of its arguments; the calls' arguments follow, and KEYS are
// the calls' keys in order. It replies with one value per call.
func writeScript(fams []*Lua) string {
	var b strings.Builder
	b.WriteString(`-- aupguard: one stage's store work in one script (internal/store/batch)
local P = {}
-- store_now is the server's time in ms, read once per batch (TIME).
local batch_now
local function store_now()
  if batch_now == nil then
    local t = redis.call('TIME')
    batch_now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  return batch_now
end
`)
	for _, l := range fams {
		fmt.Fprintf(&b, "do -- family %s\n%s\n", l.family, l.lib)
		for _, n := range l.names() {
			p := l.procs[n]
			fmt.Fprintf(&b, "P[%q] = function(KEYS, ARGV)\n%s\nend\n", p.name, p.body)
		}
		b.WriteString("end\n")
	}
	b.WriteString(`local n = tonumber(ARGV[1])
local ki, ai = 0, 1 + 3 * n
local out = {}
for i = 1, n do
  local h = 1 + (i - 1) * 3
  local f = P[ARGV[h + 1]]
  local nk, na = tonumber(ARGV[h + 2]), tonumber(ARGV[h + 3])
  local k, a = {}, {}
  for j = 1, nk do k[j] = KEYS[ki + j] end
  for j = 1, na do a[j] = ARGV[ai + j] end
  ki, ai = ki + nk, ai + na
  out[i] = f(k, a)
end
return out
`)
	return b.String()
}
