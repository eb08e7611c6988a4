package daemon

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aupguard/aupguard/internal/sdnotify"
)

// The service manager's view of the daemon (systemd Type=notify): READY=1
// once the milter accepts and the store answers, RELOADING=1 and READY=1
// around a reload, STOPPING=1 at shutdown, and WATCHDOG=1 pings while the
// daemon is alive. Without Options.Notifier all of it is a no-op.

// notify sends the assignments, logging a failure (never fatal: the
// gateway serves whether or not the manager hears it).
func (d *Daemon) notify(assignments ...string) {
	if err := d.opts.Notifier.Notify(assignments...); err != nil {
		d.log.Warn("service manager notification failed", "err", err)
	}
}

// announceReady waits until the store answers, then sends READY=1. The
// milter already serves meanwhile (a store failure gets store.on_error).
func (d *Daemon) announceReady(ctx context.Context) {
	if d.opts.Notifier == nil {
		return
	}
	wait := 100 * time.Millisecond
	for {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := d.deps.Store.Ping(pctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			break
		}
		d.log.Warn("not ready: the store does not answer", "store", d.deps.Store.Backend, "err", err)
		d.notify("STATUS=waiting for the " + d.deps.Store.Backend + " store: " + oneLine(err.Error()))
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
	d.readySent.Store(true)
	d.notify("READY=1", "STATUS="+d.status())
	d.log.Info("ready", "milter", d.milter.Addr().String(), "store", d.deps.Store.Backend)
}

// status is the STATUS= text of a serving daemon.
func (d *Daemon) status() string {
	d.mu.Lock()
	n := len(d.cfg.Customers)
	d.mu.Unlock()
	return fmt.Sprintf("serving milter on %s, %d customers", d.milter.Addr(), n)
}

// reloading tells the manager a reload started; the func it returns tells
// it the reload ended (READY=1 again, with the outcome as STATUS).
func (d *Daemon) reloading() func(error) {
	if d.opts.Notifier == nil {
		return func(error) {}
	}
	d.notify("RELOADING=1", sdnotify.Monotonic(), "STATUS=reloading the config")
	return func(err error) {
		st := "STATUS=" + d.status()
		if err != nil {
			st = "STATUS=reload refused, running config kept: " + oneLine(err.Error())
		}
		if d.readySent.Load() {
			d.notify("READY=1", st)
		} else {
			d.notify(st)
		}
	}
}

// errNotServing is the liveness probe's answer once the milter's accept
// loop has ended.
var errNotServing = errors.New("the milter no longer accepts connections")

// alive is the watchdog's probe: the milter's accept loop runs and the
// daemon's config lock can be taken (a wedged reload or directory change
// would hold it).
func (d *Daemon) alive(ctx context.Context) error {
	if !d.serving.Load() {
		return errNotServing
	}
	got := make(chan struct{})
	go func() {
		d.mu.Lock()
		_ = d.cfg
		d.mu.Unlock()
		close(got)
	}()
	select {
	case <-got:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("the config lock is held: %w", ctx.Err())
	}
}

// runWatchdog pings the manager's watchdog while the daemon is alive.
func (d *Daemon) runWatchdog(ctx context.Context) {
	d.opts.Notifier.RunWatchdog(ctx, d.alive, func(err error) {
		d.log.Error("watchdog ping withheld", "err", err)
	})
}

// oneLine keeps the first line of s (a STATUS= value has no newline).
func oneLine(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' || s[i] == '\r' {
			return s[:i]
		}
	}
	return s
}
