// Package daemon runs the gateway as a service: it loads the config, opens
// the store and the milter listener, reloads on request without dropping
// MTA connections, and shuts down gracefully. cmd/aupguard's serve command
// and the end-to-end tests both run it.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"reflect"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/connguard"
	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/customer"
	"github.com/aupguard/aupguard/internal/engine/gateway"
	"github.com/aupguard/aupguard/internal/engine/setup"
	"github.com/aupguard/aupguard/internal/observability/access"
	"github.com/aupguard/aupguard/internal/observability/admin"
	"github.com/aupguard/aupguard/internal/observability/audit"
	"github.com/aupguard/aupguard/internal/observability/events"
	"github.com/aupguard/aupguard/internal/observability/metrics"
	"github.com/aupguard/aupguard/internal/observability/notify"
	"github.com/aupguard/aupguard/internal/observability/syslog"
	"github.com/aupguard/aupguard/internal/sdnotify"
	"github.com/aupguard/aupguard/milter"
)

// Options tune a Daemon.
type Options struct {
	// ConfigPath is the config file; Reload reads it again.
	ConfigPath string
	// LogOutput receives the log (default: discarded).
	LogOutput io.Writer
	Clock     clock.Clock
	// Stdin is where reputation.deliveries.source "-" reads (default os.Stdin).
	Stdin io.Reader
	// Notifier tells the service manager about readiness, reloads,
	// shutdown and liveness (sd_notify; nil: nobody is told).
	Notifier *sdnotify.Notifier
	// Version is the binary's version, exported as aupguard_build_info.
	Version string
	// Config, when set, is the config already loaded from ConfigPath
	// (New then does not read the file again).
	Config *config.Config
	// Runtime are the attributes of the "runtime" line logged at start
	// (package sysmon's Start.Attrs); nil: no line.
	Runtime []any
}

// Daemon is a running gateway.
type Daemon struct {
	opts   Options
	log    *slog.Logger
	deps   *setup.Deps
	engine *gateway.Engine
	milter *milter.Server
	extras []Service

	events      *events.Recorder
	metrics     *metrics.Metrics
	admin       *admin.Server
	rawResolver any // the caching resolver, before instrumentation (/readyz)
	// host holds what the families registered (setup.Host).
	host *setup.Host
	// limits are the capped HTTP listeners (the unsubscribe endpoint, the
	// admin server).
	limits []*connguard.LimitListener

	notifier *notify.Notifier
	dir      *customer.Manager
	// tokens are the scoped access tokens and audit the trail of changes
	// (both in the store, shared by every gateway).
	tokens     *access.Tokens
	audit      *audit.Log
	file       *config.Config // the config file as read (d.cfg is effective)
	dirApplied int64          // the directory version installed at start
	dirInForce atomic.Int64
	dirApplies atomic.Uint64
	dirFailed  atomic.Uint64
	reloadMu   sync.Mutex  // one reload or directory change at a time
	serving    atomic.Bool // the milter's accept loop runs
	readySent  atomic.Bool // READY=1 was sent to the service manager

	syslog *syslog.Writer // nil unless log.syslog.enabled
	// explainSlots bounds the /api/explain requests served at once.
	explainSlots chan struct{}

	mu  sync.Mutex
	cfg *config.Config
}

// Service is something else the daemon runs beside the milter (the admin
// server, the unsubscribe endpoint), started and stopped with it.
type Service interface {
	Serve(ctx context.Context) error
	Shutdown(ctx context.Context) error
}

// New loads the config, opens everything and listens; Run serves.
func New(opts Options) (*Daemon, error) {
	cfg := opts.Config
	if cfg == nil {
		var err error
		if cfg, err = config.Load(opts.ConfigPath, gateway.ConfigOptions()); err != nil {
			return nil, err
		}
	}
	if opts.LogOutput == nil {
		opts.LogOutput = io.Discard
	}
	if opts.Clock == nil {
		opts.Clock = clock.System{}
	}
	log := gateway.NewLogger(cfg.Log, opts.LogOutput)
	var sl *syslog.Writer
	var err error
	if sc := cfg.Log.Syslog; sc.Enabled {
		// Besides stderr: every line also to syslog (RFC 5424), queued so
		// that a slow or absent syslog never holds a reply.
		if sl, err = syslog.New(syslog.Options{Address: sc.Address, Facility: sc.Facility, Tag: sc.Tag, Errors: opts.LogOutput}); err != nil {
			return nil, fmt.Errorf("log.syslog: %w", err)
		}
		log = slog.New(syslog.Fanout(log.Handler(), sl.Handler(logLevel(cfg.Log.Level), cfg.Log.Format)))
	}
	deps, err := gateway.OpenDeps(cfg, opts.Clock, log)
	if err != nil {
		closeSyslog(sl)
		return nil, err
	}
	deps.Shared = setup.NewShared() // kept across reloads, run by Run
	deps.Live = &customer.Live{}    // the directory in force, across changes
	d := &Daemon{opts: opts, log: log, deps: deps, cfg: cfg, file: cfg, syslog: sl, explainSlots: make(chan struct{}, maxExplains)}
	if cfg, err = d.openDirectory(cfg); err != nil {
		deps.Store.Close()
		return nil, err
	}
	d.cfg, d.deps = cfg, deps.WithConfig(cfg)
	deps = d.deps
	observers, extras, err := services(d)
	if err != nil {
		deps.Store.Close()
		return nil, err
	}
	d.extras = extras
	st, err := gateway.Build(deps)
	if err != nil {
		for _, s := range d.extras {
			_ = s.Shutdown(context.Background())
		}
		deps.Store.Close()
		return nil, err
	}
	d.engine = gateway.NewEngine(st, opts.Clock, log, observers...)
	// The config's YAML tree and the other garbage of loading it (hundreds
	// of MB for 100,000 customers) are returned to the system now rather
	// than by the background scavenger minutes later: the resident size
	// at ready is what the running gateway keeps (docs/capacity.md).
	debug.FreeOSMemory()
	uids, allowed, err := milterAccess(cfg, log)
	if err != nil {
		return nil, err
	}
	d.milter, err = milter.Listen(d.engine, milter.Options{
		Listen:         cfg.Milter.Listen,
		AllowedMTAs:    allowed,
		AllowedPeers:   uids,
		SocketGroup:    cfg.Milter.SocketGroup,
		Peers:          d.metrics,
		MaxConnections: cfg.Milter.MaxConnections,
		ReadTimeout:    cfg.Milter.ReadTimeout,
		WriteTimeout:   cfg.Milter.WriteTimeout,
		Logger:         log,
		Sessions:       sessionObserver(observers),
		Panics:         deps.Panics,
	})
	if err == nil {
		err = registerListenerMetrics(d.metrics.Registry(), "milter", d.milter.RetryListener(), nil)
	}
	if err != nil {
		for _, s := range d.extras {
			_ = s.Shutdown(context.Background())
		}
		deps.Store.Close()
		return nil, err
	}
	return d, nil
}

// milterAccess resolves who may speak milter: the uids of
// milter.allowed_peers (a name that is no user here is logged and allows
// nobody) and the networks of milter.allowed_mtas.
func milterAccess(cfg *config.Config, log *slog.Logger) ([]uint32, []netip.Prefix, error) {
	nets := make([]netip.Prefix, 0, len(cfg.Milter.AllowedMTAs))
	for _, s := range cfg.Milter.AllowedMTAs {
		p, err := config.ParsePrefix(s)
		if err != nil {
			return nil, nil, err
		}
		nets = append(nets, p)
	}
	uids, unknown := milter.ResolvePeers(cfg.Milter.AllowedPeers)
	for _, n := range unknown {
		log.Warn("milter.allowed_peers: no such user on this host; it allows nobody", "user", n)
	}
	if uids == nil {
		uids = []uint32{} // nobody rather than the defaults
	}
	log.Info("milter peers allowed", "allowed_peers", cfg.Milter.AllowedPeers, "uids", uids, "allowed_mtas", cfg.Milter.AllowedMTAs)
	return uids, nets, nil
}

func sessionObserver(obs []gateway.Observer) milter.SessionObserver {
	for _, o := range obs {
		if so, ok := o.(milter.SessionObserver); ok {
			return so
		}
	}
	return nil
}

// MilterAddr is the milter listener's address.
func (d *Daemon) MilterAddr() net.Addr { return d.milter.Addr() }

// Engine returns the gateway engine.
func (d *Daemon) Engine() *gateway.Engine { return d.engine }

// Deps returns the daemon's dependencies (store, secret, resolver).
func (d *Daemon) Deps() *setup.Deps { return d.deps }

// Logger returns the daemon's logger.
func (d *Daemon) Logger() *slog.Logger { return d.log }

// Run serves until ctx is done, then shuts down gracefully: it stops
// accepting, lets MTA connections finish up to milter.shutdown_timeout, and
// closes the store.
func (d *Daemon) Run(ctx context.Context) error {
	d.mu.Lock()
	logWarnings(d.log, d.cfg)
	d.mu.Unlock()
	if d.opts.Runtime != nil {
		d.log.Info("runtime", d.opts.Runtime...)
	}
	d.log.Info("aupguard started", "milter", d.milter.Addr().String(), "store", d.deps.Store.Backend,
		"customers", len(d.cfg.Customers), "chain", fmt.Sprint(d.cfg.Chain))
	errc := make(chan error, 1+len(d.extras))
	d.serving.Store(true)
	go func() { err := d.milter.Serve(); d.serving.Store(false); errc <- err }()
	sctx, stopServices := context.WithCancel(context.Background())
	defer stopServices()
	for _, s := range d.extras {
		go func(s Service) { errc <- s.Serve(sctx) }(s)
	}
	d.deps.Shared.Start(sctx)
	go d.announceReady(sctx)
	go d.runWatchdog(sctx)
	watched := make(chan struct{})
	go func() { defer close(watched); d.watchDirectory(sctx) }()
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
		if err != nil {
			d.log.Error("listener failed", "err", err)
		}
	}
	d.notify("STOPPING=1", "STATUS=shutting down, draining MTA connections")
	d.log.Info("aupguard shutting down", "active_sessions", d.milter.Active(), "deadline", d.cfg.Milter.ShutdownTimeout.String())
	sd, cancel := context.WithTimeout(context.Background(), d.cfg.Milter.ShutdownTimeout)
	defer cancel()
	if e := d.milter.Shutdown(sd); e != nil && !errors.Is(e, context.Canceled) {
		d.log.Warn("shutdown deadline reached; closed remaining MTA connections", "err", e)
	}
	for _, s := range d.extras {
		if e := s.Shutdown(sd); e != nil && !errors.Is(e, context.Canceled) {
			d.log.Error("shutdown: a service did not stop cleanly", "err", e)
			err = errors.Join(err, fmt.Errorf("shutdown: %w", e))
		}
	}
	stopServices()
	<-watched
	d.engine.Close()
	closeObservers(d)
	// The memory store writes its last state here: a failure loses what
	// was counted since the last snapshot, so it is an error exit.
	if e := d.deps.Store.Close(); e != nil {
		d.log.Error("shutdown: closing the store failed", "store", d.deps.Store.Backend, "err", e)
		err = errors.Join(err, fmt.Errorf("closing the store: %w", e))
	}
	if err != nil {
		d.log.Error("aupguard stopped with errors", "err", err)
		closeSyslog(d.syslog)
		return err
	}
	d.log.Info("aupguard stopped")
	closeSyslog(d.syslog)
	return nil
}

// logLevel is the slog level of log.level (info when unknown).
func logLevel(s string) slog.Level {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToUpper(s))); err != nil {
		return slog.LevelInfo
	}
	return l
}

// closeSyslog sends the syslog lines still queued, for up to 2 seconds.
func closeSyslog(w *syslog.Writer) {
	if w == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = w.Close(ctx)
}

// logWarnings logs the config's warnings, one line each.
func logWarnings(log *slog.Logger, cfg *config.Config) {
	for _, w := range cfg.Warnings() {
		log.Warn("config warning", "file", w.File, "line", w.Line, "path", w.Path, "warning", w.Msg)
	}
}

// Reload reads the config again. A config with errors is refused, each
// error logged with its place, and the running config stays. Transactions
// under way finish on the config they started with.
func (d *Daemon) Reload() (err error) {
	done := d.reloading()
	defer func() { done(err) }()
	err = d.reload()
	if err != nil {
		d.metrics.ConfigReloadFailed()
	} else {
		d.metrics.ConfigLoaded(d.deps.Clock.Now(), true)
	}
	return err
}

func (d *Daemon) reload() error {
	cfg, err := config.Load(d.opts.ConfigPath, gateway.ConfigOptions())
	if err != nil {
		var es config.Errors
		if errors.As(err, &es) {
			for _, e := range es {
				d.log.Error("reload refused: config error", "file", e.File, "line", e.Line, "path", e.Path, "error", e.Msg)
			}
		} else {
			d.log.Error("reload refused", "err", err)
		}
		return err
	}
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	d.mu.Lock()
	old := d.cfg
	d.mu.Unlock()
	if !reflect.DeepEqual(old.Store, cfg.Store) || old.SecretFile != cfg.SecretFile || !reflect.DeepEqual(old.DNS, cfg.DNS) ||
		old.Milter.Listen != cfg.Milter.Listen || old.Milter.SocketGroup != cfg.Milter.SocketGroup || old.Log.Syslog != cfg.Log.Syslog {
		d.log.Warn("store, secret, dns, milter.listen, milter.socket_group and log.syslog changes take effect at restart; keeping the running ones")
	}
	file := cfg
	d.dir.SetBase(file)
	if cfg, err = d.dir.Effective(); err != nil {
		d.dir.SetBase(d.file)
		d.logDirectoryError("reload refused: the config file conflicts with the customer directory", err)
		return err
	}
	if len(cfg.Customers) == 0 && len(old.Customers) > 0 {
		d.dir.SetBase(d.file)
		// With no customer every client is unidentified: every message
		// would get a permanent refusal. A half-written file or a broken
		// config tool is far likelier than a provider with no customers
		// left; to really run without customers, restart.
		err := fmt.Errorf("%s: the new config (file and customer directory together) has no customers while the running one has %d: every message would be refused as unidentified; keeping the running config (restart to run without customers)",
			d.opts.ConfigPath, len(old.Customers))
		d.log.Error("reload refused: no customers", "file", d.opts.ConfigPath, "running_customers", len(old.Customers), "error", err.Error())
		return err
	}
	if err := d.install(cfg); err != nil {
		d.dir.SetBase(d.file)
		d.log.Error("reload refused", "err", err)
		return err
	}
	if !slices.Equal(old.Milter.AllowedPeers, cfg.Milter.AllowedPeers) || !slices.Equal(old.Milter.AllowedMTAs, cfg.Milter.AllowedMTAs) {
		// Connections accepted from now on; those open stay.
		if uids, nets, err := milterAccess(cfg, d.log); err == nil {
			d.milter.SetAccess(uids, nets)
		}
	}
	d.file = file
	d.dirInForce.Store(d.dir.Version())
	logWarnings(d.log, cfg)
	d.log.Info("config reloaded", "customers", len(cfg.Customers), "chain", fmt.Sprint(cfg.Chain))
	return nil
}
