// Package store opens the gateway's shared state: the embedded in-memory
// backend (one MTA) or Redis (standalone, Sentinel or Cluster), shared by all
// of the provider's MTAs. Each kind of state (counters, opt-outs, events)
// builds its own backend on a Handle, so that one Lua script can do all of
// a message's work for that kind in one round trip.
package store

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/store/batch"
)

// Backend names.
const (
	Memory = "memory"
	Redis  = "redis"
)

// ErrUnavailable wraps every store failure, so that callers can tell a
// store outage (which becomes the configured on_error) from a bug.
var ErrUnavailable = batch.ErrUnavailable

// Handle is an open store. Exactly one of Client (Redis) or the memory
// fields is in use, as Backend says.
type Handle struct {
	// Backend is Memory or Redis.
	Backend string
	// Client is the Redis client (nil for memory).
	Client redis.UniversalClient
	// Prefix starts every Redis key.
	Prefix string
	// Path is where the memory backend persists durable state; empty
	// means nothing persists across restarts.
	Path string
	// Clock is the time source of the memory backend (Redis uses TIME).
	Clock clock.Clock
	// Timeout bounds one store operation.
	Timeout time.Duration
	// Logger receives what the backends report in the background (a
	// snapshot that cannot be written); nil discards it.
	Logger *slog.Logger
	// Breaker is the circuit breaker around the Redis client (nil for
	// memory).
	Breaker *Breaker

	batches atomic.Pointer[batch.Runner]
	mu      sync.Mutex
	shared  map[string]any
}

// Open opens the store the config names. For Redis it does not wait for the
// server: an outage at start behaves like an outage later (on_error).
func Open(cfg config.StoreConfig, clk clock.Clock) (*Handle, error) {
	h := &Handle{Backend: cfg.Backend, Clock: clk, Timeout: cfg.Timeout, Path: cfg.Path, Prefix: cfg.Redis.KeyPrefix}
	if clk == nil {
		h.Clock = clock.System{}
	}
	if cfg.Backend != Redis {
		h.Backend = Memory
		if cfg.Path != "" {
			if err := os.MkdirAll(cfg.Path, 0o700); err != nil {
				return nil, stateDirError(cfg.Path, err)
			}
		}
		return h, nil
	}
	rc := cfg.Redis
	opts := &redis.UniversalOptions{
		Addrs:           rc.Addrs,
		MasterName:      rc.MasterName,
		Username:        rc.Username,
		DB:              rc.DB,
		PoolSize:        rc.PoolSize,
		DialTimeout:     rc.DialTimeout,
		ReadTimeout:     cfg.Timeout,
		WriteTimeout:    cfg.Timeout,
		IsClusterMode:   rc.Cluster,
		DisableIdentity: true,
		// Plain Redis has no maintenance notifications; asking for them
		// costs a round trip and a log line per connection.
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	}
	if rc.PasswordFile != "" {
		b, err := os.ReadFile(rc.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("store.redis.password_file: %w", err)
		}
		opts.Password = strings.TrimSpace(string(b))
	}
	if rc.TLS {
		opts.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	h.Client = redis.NewUniversalClient(opts)
	client := h.Client
	// The back-off runs on real time whatever clock the store's data uses.
	h.Breaker = newBreaker(clock.System{}, func(ctx context.Context) error { return client.Ping(ctx).Err() })
	h.Client.AddHook(h.Breaker)
	return h, nil
}

// Ping checks that the store answers.
func (h *Handle) Ping(ctx context.Context) error {
	if h.Client == nil {
		return nil
	}
	ctx, cancel := clock.WithTimeout(ctx, h.timeout())
	defer cancel()
	if err := h.Client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return nil
}

// Close releases the store: first the shared backends that hold resources
// (a memory backend flushing its file), then the Redis client.
func (h *Handle) Close() error {
	h.mu.Lock()
	shared := h.shared
	h.shared = nil
	h.mu.Unlock()
	var errs []error
	for _, v := range shared {
		if c, ok := v.(io.Closer); ok {
			errs = append(errs, c.Close())
		}
	}
	if h.Client != nil {
		errs = append(errs, h.Client.Close())
	}
	return errors.Join(errs...)
}

func (h *Handle) timeout() time.Duration {
	if h.Timeout <= 0 {
		return config.DefaultStoreTimeout
	}
	return h.Timeout
}

// Context returns ctx bounded by the store's operation timeout (ctx
// itself when it ends sooner, clock.WithTimeout).
func (h *Handle) Context(ctx context.Context) (context.Context, context.CancelFunc) {
	return clock.WithTimeout(ctx, h.timeout())
}

// CustomerKey builds a Redis key for one customer. All of a customer's keys
// share the hash tag {c:ID}, so a Lua script may touch several of them on a
// Redis Cluster (they live in one slot).
func (h *Handle) CustomerKey(customerID string, parts ...string) string {
	// One allocation: this runs for every key of every message.
	n := len(h.Prefix) + len(customerID) + 4 + len(parts)
	for _, p := range parts {
		n += len(p)
	}
	var b strings.Builder
	b.Grow(n)
	b.WriteString(h.Prefix)
	b.WriteString("{c:")
	b.WriteString(customerID)
	b.WriteString("}:")
	for i, p := range parts {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(p)
	}
	return b.String()
}

// Key builds a Redis key outside any customer's slot.
func (h *Handle) Key(parts ...string) string {
	return h.Prefix + strings.Join(parts, ":")
}

// Unavailable wraps a Redis error as ErrUnavailable (nil stays nil; a
// missing key is not an outage).
func Unavailable(err error) error { return batch.Unavailable(err) }

// LoadScripts loads Lua scripts at start so that the hot path can use
// EVALSHA; on a Cluster it loads them on every master. A script missing
// later (server restarted, SCRIPT FLUSH) is reloaded by Script.Run on
// NOSCRIPT, so a failure here is not fatal.
func (h *Handle) LoadScripts(ctx context.Context, scripts ...*redis.Script) error {
	if h.Client == nil {
		return nil
	}
	load := func(ctx context.Context, c redis.Scripter) error {
		for _, s := range scripts {
			if err := s.Load(ctx, c).Err(); err != nil {
				return Unavailable(err)
			}
		}
		return nil
	}
	if cc, ok := h.Client.(*redis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return load(ctx, c) })
	}
	return load(ctx, h.Client)
}

// Shared returns the one backend of a kind (counters, opt-out lists, events)
// for this handle, creating it with mk on first use. The milter's checks,
// the admin API and the commands all get the same instance, so that with
// the memory backend they see the same state.
func (h *Handle) Shared(kind string, mk func() (any, error)) (any, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if v, ok := h.shared[kind]; ok {
		return v, nil
	}
	v, err := mk()
	if err != nil {
		return nil, err
	}
	if h.shared == nil {
		h.shared = map[string]any{}
	}
	h.shared[kind] = v
	return v, nil
}

// stateDirError explains a store.path the process cannot create or use:
// which folder, as which user, and the ways out.
func stateDirError(path string, err error) error {
	abs, aerr := filepath.Abs(path)
	if aerr != nil {
		abs = path
	}
	return fmt.Errorf("store.path %s: %w: uid %d cannot create or write it; run aupguard as the user that owns it (the packaged unit's StateDirectory, /var/lib/aupguard), or set store.path to a folder this user can write (e.g. ./state)", abs, err, os.Getuid())
}

// SharedOf is Shared for a backend of type T: the one of kind on h, made
// by mk on first use. A kind made earlier with another type is an error.
func SharedOf[T any](h *Handle, kind string, mk func() (T, error)) (T, error) {
	v, err := h.Shared(kind, func() (any, error) { return mk() })
	if err != nil {
		var zero T
		return zero, err
	}
	t, ok := v.(T)
	if !ok {
		return t, fmt.Errorf("store: shared %s has type %T", kind, v)
	}
	return t, nil
}
