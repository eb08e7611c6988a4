package access

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/aupguard/aupguard/internal/atomicfile"
	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/store"
)

// Token is a scoped access token as the store keeps it: its SHA-256
// digest, never the token itself (shown once, at creation).
type Token struct {
	Name string `json:"name"`
	// Kind is KindReseller or KindCustomer, ID the tenant's id.
	Kind string `json:"kind"`
	ID   string `json:"id"`
	// Hash is the hex SHA-256 of the token.
	Hash      string    `json:"hash"`
	Created   time.Time `json:"created"`
	CreatedBy string    `json:"created_by,omitempty"`
	// Expires is when the token stops working (zero: never).
	Expires time.Time `json:"expires,omitzero"`
	// LastUsed is the last authenticated request (within TouchEvery).
	LastUsed time.Time `json:"last_used,omitzero"`
}

// Principal is the token's principal.
func (t Token) Principal() Principal { return Principal{Name: t.Name, Kind: t.Kind, ID: t.ID} }

// Errors of the token store.
var (
	ErrTokenExists   = errors.New("a token with this name exists")
	ErrNoToken       = errors.New("no such token")
	ErrTooManyTokens = errors.New("too many tokens: revoke some first")
)

// MaxTokens bounds the tokens the store holds (a flood of creations
// cannot fill it).
const MaxTokens = 10000

// TouchEvery is how often a token's last use is written (at most once
// a minute per token and gateway: a busy console is not a write each).
const TouchEvery = time.Minute

// TokenPrefix starts every access token (so a leaked one is recognisable
// by secret scanners).
const TokenPrefix = "aupt_"

var tokenName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$`)

// TokenStore keeps the tokens, shared by every gateway on the store.
type TokenStore interface {
	// Create adds t; ErrTokenExists when its name is taken.
	Create(ctx context.Context, t Token) error
	// Lookup finds a token by its hash.
	Lookup(ctx context.Context, hash string) (Token, bool, error)
	// List returns every token, by name.
	List(ctx context.Context) ([]Token, error)
	// Revoke deletes the named token and returns it; ErrNoToken when none.
	Revoke(ctx context.Context, name string) (Token, error)
	// Touch records a use of the token with hash (nothing if revoked).
	Touch(ctx context.Context, hash string, at time.Time) error
}

// OpenTokens returns the token store of a store handle: Redis keys under
// the handle's prefix, or the memory backend (persisted under store.path
// as tokens.json, mode 0600).
func OpenTokens(h *store.Handle) (TokenStore, error) {
	if h.Client != nil {
		return &redisTokens{h: h}, nil
	}
	v, err := h.Shared("tokens", func() (any, error) { return newMemoryTokens(h.Path) })
	if err != nil {
		return nil, err
	}
	return v.(*memoryTokens), nil
}

// Tokens issues and checks access tokens on a TokenStore.
type Tokens struct {
	Store TokenStore
	Clock clock.Clock

	mu      sync.Mutex
	touched map[string]time.Time
}

// NewTokens returns the token service on s.
func NewTokens(s TokenStore, clk clock.Clock) *Tokens {
	if clk == nil {
		clk = clock.System{}
	}
	return &Tokens{Store: s, Clock: clk, touched: map[string]time.Time{}}
}

// Hash is the digest the store keeps for a token.
func Hash(token string) string {
	s := sha256.Sum256([]byte(token))
	return hex.EncodeToString(s[:])
}

// Create issues a token scoped to the reseller or customer id, valid for
// ttl (0: no expiry), and returns it (the only time it is seen) with its
// record.
func (ts *Tokens) Create(ctx context.Context, name, kind, id string, ttl time.Duration, by string) (string, Token, error) {
	if !tokenName.MatchString(name) || name == "admin" {
		return "", Token{}, fmt.Errorf("token name %q: want 1 to 64 letters, digits, '.', '_', '@' or '-' (not \"admin\")", name)
	}
	if kind != KindReseller && kind != KindCustomer {
		return "", Token{}, fmt.Errorf("token scope %q: want reseller or customer", kind)
	}
	if id == "" {
		return "", Token{}, errors.New("token scope: no " + kind + " id")
	}
	if ttl < 0 {
		return "", Token{}, errors.New("token expiry: negative")
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", Token{}, err
	}
	plain := TokenPrefix + hex.EncodeToString(raw[:])
	now := ts.Clock.Now().UTC().Truncate(time.Second)
	t := Token{Name: name, Kind: kind, ID: id, Hash: Hash(plain), Created: now, CreatedBy: by}
	if ttl > 0 {
		t.Expires = now.Add(ttl)
	}
	if err := ts.Store.Create(ctx, t); err != nil {
		return "", Token{}, err
	}
	return plain, t, nil
}

// Authenticate returns the token a presented string is, when it is a
// live one (not revoked, not expired), and records its use (at most once
// per TouchEvery). ok false: not a token. The lookup is by digest, so
// its timing says nothing of how close a guess was.
func (ts *Tokens) Authenticate(ctx context.Context, presented string) (Token, bool, error) {
	if len(presented) != len(TokenPrefix)+64 || presented[:len(TokenPrefix)] != TokenPrefix {
		return Token{}, false, nil
	}
	h := Hash(presented)
	t, ok, err := ts.Store.Lookup(ctx, h)
	if err != nil || !ok {
		return Token{}, false, err
	}
	now := ts.Clock.Now()
	if !t.Expires.IsZero() && !now.Before(t.Expires) {
		return Token{}, false, nil
	}
	ts.mu.Lock()
	last := ts.touched[h]
	due := now.Sub(last) >= TouchEvery
	if due {
		ts.touched[h] = now
		if len(ts.touched) > MaxTokens {
			clear(ts.touched)
		}
	}
	ts.mu.Unlock()
	if due {
		_ = ts.Store.Touch(ctx, h, now.UTC().Truncate(time.Second))
		t.LastUsed = now
	}
	return t, true, nil
}

// memoryTokens is the token store of a single MTA.
type memoryTokens struct {
	mu     sync.Mutex
	file   string
	Tokens map[string]Token `json:"tokens"` // by hash
}

func newMemoryTokens(dir string) (*memoryTokens, error) {
	m := &memoryTokens{Tokens: map[string]Token{}}
	if dir == "" {
		return m, nil
	}
	m.file = filepath.Join(dir, "tokens.json")
	if err := atomicfile.ReadJSON(m.file, m); err != nil {
		return nil, fmt.Errorf("access tokens: %w", err)
	}
	if m.Tokens == nil {
		m.Tokens = map[string]Token{}
	}
	return m, nil
}

func (m *memoryTokens) persist() error {
	if m.file == "" {
		return nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return atomicfile.Write(m.file, b)
}

func (m *memoryTokens) Create(_ context.Context, t Token) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.Tokens) >= MaxTokens {
		return ErrTooManyTokens
	}
	for _, o := range m.Tokens {
		if o.Name == t.Name {
			return ErrTokenExists
		}
	}
	m.Tokens[t.Hash] = t
	if err := m.persist(); err != nil {
		delete(m.Tokens, t.Hash)
		return err
	}
	return nil
}

func (m *memoryTokens) Lookup(_ context.Context, hash string) (Token, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.Tokens[hash]
	return t, ok, nil
}

func (m *memoryTokens) List(context.Context) ([]Token, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Token, 0, len(m.Tokens))
	for _, t := range m.Tokens {
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (m *memoryTokens) Revoke(_ context.Context, name string) (Token, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for h, t := range m.Tokens {
		if t.Name == name {
			delete(m.Tokens, h)
			if err := m.persist(); err != nil {
				m.Tokens[h] = t
				return Token{}, err
			}
			return t, nil
		}
	}
	return Token{}, ErrNoToken
}

func (m *memoryTokens) Touch(_ context.Context, hash string, at time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.Tokens[hash]
	if !ok {
		return nil
	}
	t.LastUsed = at
	m.Tokens[hash] = t
	return m.persist()
}

// redisTokens keeps the tokens in three hashes sharing one hash tag (one
// Cluster slot): records by hash, hash by name, last use by hash.
type redisTokens struct{ h *store.Handle }

func (r *redisTokens) keys() []string {
	p := r.h.Prefix + "{tokens}:"
	return []string{p + "byhash", p + "names", p + "used"}
}

var createTokenScript = redis.NewScript(`
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then return -1 end
if redis.call('HLEN', KEYS[2]) >= tonumber(ARGV[4]) then return -2 end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 0
`)

var revokeTokenScript = redis.NewScript(`
local h = redis.call('HGET', KEYS[2], ARGV[1])
if not h then return false end
local rec = redis.call('HGET', KEYS[1], h)
redis.call('HDEL', KEYS[1], h)
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], h)
return rec
`)

var touchTokenScript = redis.NewScript(`
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then redis.call('HSET', KEYS[3], ARGV[1], ARGV[2]) end
return 0
`)

func (r *redisTokens) Create(ctx context.Context, t Token) error {
	b, err := json.Marshal(t)
	if err != nil {
		return err
	}
	ctx, cancel := r.h.Context(ctx)
	defer cancel()
	n, err := createTokenScript.Run(ctx, r.h.Client, r.keys(), t.Name, t.Hash, string(b), MaxTokens).Int()
	if err != nil {
		return store.Unavailable(err)
	}
	switch n {
	case -1:
		return ErrTokenExists
	case -2:
		return ErrTooManyTokens
	}
	return nil
}

func (r *redisTokens) decode(rec, used string) (Token, error) {
	var t Token
	if err := json.Unmarshal([]byte(rec), &t); err != nil {
		return t, err
	}
	if sec, err := strconv.ParseInt(used, 10, 64); err == nil {
		t.LastUsed = time.Unix(sec, 0).UTC()
	}
	return t, nil
}

func (r *redisTokens) Lookup(ctx context.Context, hash string) (Token, bool, error) {
	k := r.keys()
	ctx, cancel := r.h.Context(ctx)
	defer cancel()
	var rec, used *redis.StringCmd
	_, err := r.h.Client.Pipelined(ctx, func(p redis.Pipeliner) error {
		rec = p.HGet(ctx, k[0], hash)
		used = p.HGet(ctx, k[2], hash)
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return Token{}, false, store.Unavailable(err)
	}
	if rec.Err() != nil {
		return Token{}, false, nil
	}
	t, err := r.decode(rec.Val(), used.Val())
	if err != nil {
		return Token{}, false, err
	}
	return t, true, nil
}

func (r *redisTokens) List(ctx context.Context) ([]Token, error) {
	k := r.keys()
	ctx, cancel := r.h.Context(ctx)
	defer cancel()
	var recs, used *redis.MapStringStringCmd
	_, err := r.h.Client.Pipelined(ctx, func(p redis.Pipeliner) error {
		recs = p.HGetAll(ctx, k[0])
		used = p.HGetAll(ctx, k[2])
		return nil
	})
	if err != nil {
		return nil, store.Unavailable(err)
	}
	out := make([]Token, 0, len(recs.Val()))
	for h, rec := range recs.Val() {
		t, err := r.decode(rec, used.Val()[h])
		if err != nil {
			continue
		}
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (r *redisTokens) Revoke(ctx context.Context, name string) (Token, error) {
	ctx, cancel := r.h.Context(ctx)
	defer cancel()
	rec, err := revokeTokenScript.Run(ctx, r.h.Client, r.keys(), name).Text()
	if errors.Is(err, redis.Nil) {
		return Token{}, ErrNoToken
	}
	if err != nil {
		return Token{}, store.Unavailable(err)
	}
	return r.decode(rec, "")
}

func (r *redisTokens) Touch(ctx context.Context, hash string, at time.Time) error {
	ctx, cancel := r.h.Context(ctx)
	defer cancel()
	return store.Unavailable(touchTokenScript.Run(ctx, r.h.Client, r.keys(), hash, at.Unix()).Err())
}
