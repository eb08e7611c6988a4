package gateway

import (
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/setup"
	"github.com/aupguard/aupguard/internal/observability/panics"
	"github.com/aupguard/aupguard/internal/secrets"
	"github.com/aupguard/aupguard/internal/store"
)

// NewLogger builds the decision logger the config asks for.
func NewLogger(cfg config.LogConfig, w io.Writer) *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(strings.ToUpper(cfg.Level))); err != nil {
		// config.Parse refuses an unknown level; a config built by
		// hand without one logs at info.
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// OpenDeps opens what the checks depend on for cfg: the store, the secret
// and the resolver. The caller closes d.Store.
func OpenDeps(cfg *config.Config, clk clock.Clock, log *slog.Logger) (*setup.Deps, error) {
	if clk == nil {
		clk = clock.System{}
	}
	h, err := store.Open(cfg.Store, clk)
	if err != nil {
		return nil, err
	}
	h.Logger = log
	if h.Client != nil {
		store.RouteRedisLog(log)
	}
	if h.Breaker != nil && log != nil {
		h.Breaker.SetLogger(log)
	}
	key, ephemeral, err := secrets.Load(cfg.SecretFile, cfg.Store.Path)
	if err != nil {
		h.Close()
		return nil, err
	}
	if ephemeral && log != nil {
		log.Warn("no secret_file and no store.path: recipient hashes and unsubscribe links change at every restart")
	}
	d := &setup.Deps{Config: cfg, Store: h, Clock: clk, Logger: log, Secret: key, Panics: panics.New(log)}
	if err := openResolver(d); err != nil {
		h.Close()
		return nil, fmt.Errorf("dns: %w", err)
	}
	return d, nil
}
