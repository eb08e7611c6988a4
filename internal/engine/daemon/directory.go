package daemon

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/customer"
	"github.com/aupguard/aupguard/internal/engine/gateway"
	"github.com/aupguard/aupguard/internal/observability/metrics"
)

// DirectoryPoll is how often a gateway asks the store whether the customer
// directory changed (one GET of the version counter): a change made on any
// gateway is applied on every other within this plus the rebuild.
const DirectoryPoll = 200 * time.Millisecond

// openDirectory opens the live customer directory on the gateway's store
// and returns the effective config (the file's customers merged with the
// store's). A store that does not answer at start, or a directory that
// conflicts with the file, leaves the file's customers in force; the
// watcher retries.
func (d *Daemon) openDirectory(file *config.Config) (*config.Config, error) {
	s, err := customer.OpenStore(d.deps.Store)
	if err != nil {
		return nil, err
	}
	d.dir = customer.NewManager(s, file, gateway.ConfigOptions(), d.deps.Clock)
	d.dir.OnForced(func(c customer.Change) {
		for _, f := range c.Forced {
			d.log.Warn("customer directory change forced", "event", "directory_forced", "customer", c.ID, "op", c.Op, "via", c.Via, "version", c.Version, "rule", f)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := d.dir.Sync(ctx); err != nil {
		d.log.Warn("customer directory: store unavailable at start; serving the config file's customers until it answers", "err", err)
		return file, nil
	}
	eff, _, err := d.dir.EffectiveUpdate()
	if err != nil {
		d.logDirectoryError("customer directory conflicts with the config file; serving the config file's customers", err)
		return file, nil
	}
	d.dirApplied = d.dir.Version()
	d.dirInForce.Store(d.dirApplied)
	return eff, nil
}

// Directory returns the live customer directory.
func (d *Daemon) Directory() *customer.Manager { return d.dir }

func (d *Daemon) logDirectoryError(msg string, err error) {
	var ve customer.ValidationError
	if errors.As(err, &ve) {
		for _, e := range ve {
			d.log.Error(msg, "customer", e.Customer, "field", e.Field, "error", e.Message)
		}
		return
	}
	d.log.Error(msg, "err", err)
}

// applyDirectory installs the directory the manager has synced: a new
// State built from the effective config, swapped in like a reload (the
// messages under way finish on the State they started with, so each is
// judged by one consistent view of its customer).
func (d *Daemon) applyDirectory() {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	start := time.Now()
	cfg, changed, err := d.dir.EffectiveUpdate()
	if err != nil {
		d.dirFailed.Add(1)
		d.logDirectoryError("customer directory change not applied", err)
		return
	}
	// The index of the running State is updated into a new one for the
	// changed customers only (the running one stays intact for the
	// messages under way), and the State rebound to it: the checks are
	// kept unless a family needs them built anew (gateway.Rebind);
	// everything is rebuilt when the manager says so.
	var st *gateway.State
	if cur := d.engine.State(); changed != nil && cur != nil && cur.Dir != nil {
		dir, err := cur.Dir.Update(cfg, changed)
		if err == nil {
			st, err = gateway.Rebind(cur, cfg, dir, changed)
		}
		if err != nil {
			d.log.Warn("customer directory: incremental update failed; rebuilding", "err", err)
			st = nil
		}
	}
	if st == nil {
		st, err = gateway.Build(d.deps.WithConfig(cfg))
	}
	if err == nil {
		err = d.installState(cfg, st)
	}
	if err != nil {
		d.dir.Invalidate() // the next apply starts from the whole directory
		d.dirFailed.Add(1)
		d.log.Error("customer directory change not applied", "err", err)
		return
	}
	d.dirApplies.Add(1)
	d.dirInForce.Store(d.dir.Version())
	d.log.Info("customer directory applied", "event", "directory_applied", "version", d.dir.Version(),
		"customers", len(cfg.Customers), "changed", len(changed), "incremental", changed != nil, "ms", time.Since(start).Milliseconds())
}

// install builds a State and the config-dependent handlers for cfg and
// swaps them in.
func (d *Daemon) install(cfg *config.Config) error {
	st, err := gateway.Build(d.deps.WithConfig(cfg))
	if err != nil {
		return err
	}
	return d.installState(cfg, st)
}

// installState runs the families' reload hooks for cfg and swaps st,
// built for cfg, in.
func (d *Daemon) installState(cfg *config.Config, st *gateway.State) error {
	if err := d.host.Reload(cfg); err != nil {
		return fmt.Errorf("handlers: %w", err)
	}
	if d.admin != nil {
		d.admin.SetConfig(cfg)
	}
	d.engine.Swap(st)
	d.mu.Lock()
	d.cfg = cfg
	d.mu.Unlock()
	return nil
}

// directoryStats are the figures /metrics exports.
func (d *Daemon) directoryStats() metrics.DirectoryStats {
	d.mu.Lock()
	n := len(d.cfg.Customers)
	d.mu.Unlock()
	return metrics.DirectoryStats{Version: d.dirInForce.Load(), Customers: n, Applied: d.dirApplies.Load(), Failed: d.dirFailed.Load()}
}

// watchDirectory follows the store's directory until ctx is done.
func (d *Daemon) watchDirectory(ctx context.Context) {
	last := time.Time{}
	d.dir.Watch(ctx, DirectoryPoll, d.dirApplied, d.applyDirectory, func(err error) {
		if time.Since(last) > time.Minute { // one line a minute during an outage
			last = time.Now()
			d.log.Warn("customer directory: store unavailable; keeping the running directory", "err", err)
		}
	})
}

// config returns the config in force (the notifier reads it per mail).
func (d *Daemon) config() *config.Config {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cfg
}
