package daemon

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"sync"

	"github.com/aupguard/aupguard/internal/checks/optout"
	"github.com/aupguard/aupguard/internal/checks/reputation"
	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/observability/admin"
	"github.com/aupguard/aupguard/internal/observability/report"
)

// repLoop runs the reputation loop beside the milter: the delivery-log
// reader and the blocklist watcher (each only when configured).
type repLoop struct {
	svc     *reputation.Service
	reader  *reputation.Reader
	watcher *reputation.Watcher
	d       *Daemon

	mu     sync.Mutex
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// newRepLoop builds the reputation service, reader and watcher for cfg.
func newRepLoop(d *Daemon, cfg *config.Config) (*repLoop, error) {
	svc, err := reputation.NewService(d.deps.Store, cfg, d.deps.Secret, d.deps.Clock, d.log)
	if err != nil {
		return nil, err
	}
	l := &repLoop{svc: svc, d: d}
	rep := svc.Reputation()
	if rep.Deliveries.Source != "" {
		l.reader = reputation.NewReader(svc)
		inChain := false
		for _, c := range cfg.Chain {
			inChain = inChain || c == reputation.CheckName
		}
		if !inChain || !cfg.CheckEnabled(reputation.CheckName) {
			d.log.Warn("reputation.deliveries.source is set but check bounce_rate is not in the chain or disabled: no queue id is remembered, no result can be matched to a customer")
		}
		if !rep.Deliveries.Egress.IsValid() && len(rep.Deliveries.Transports) == 0 {
			d.log.Warn("reputation.deliveries.egress unknown (provider.egress_ips has not exactly one address): listing reports cannot rank senders per address")
		}
	}
	if len(rep.DNSBL.Zones) > 0 {
		if d.deps.Resolver == nil {
			return nil, fmt.Errorf("reputation.dnsbl: no resolver")
		}
		l.watcher = reputation.NewWatcher(svc, d.deps.Resolver)
		h := d.deps.Store
		l.watcher.Complaints = func(ctx context.Context, id string) (int64, int64, float64, error) {
			st, err := optout.Status(ctx, h, svc.Config(), id)
			return st.Complaints, st.Delivered, st.ComplaintRate, err
		}
		l.watcher.Notify = func(ctx context.Context, subject, body string) error {
			c := svc.Config()
			if c.Provider.Postmaster == "" || c.Reports.SMTP.Host == "" {
				return fmt.Errorf("provider.postmaster or reports.smtp.host not set: no postmaster mail")
			}
			m, err := report.NewMailer(c)
			if err != nil {
				return err
			}
			m.Secret = svc.Secret
			return m.SendText(ctx, c.Provider.Postmaster, subject, body, svc.Clock.Now())
		}
		if cfg.Provider.Postmaster == "" || cfg.Reports.SMTP.Host == "" {
			d.log.Warn("blocklist watch: provider.postmaster or reports.smtp.host not set: listings are logged and counted, not mailed")
		}
	}
	return l, nil
}

// repNeedsRestart reports whether a reload changes reputation settings
// that take effect only at restart: the delivery source and the
// blocklist interval.
func repNeedsRestart(old, cfg *config.Config) bool {
	o, errOld := reputation.ConfigOf(old)
	n, errNew := reputation.ConfigOf(cfg)
	if errOld != nil || errNew != nil {
		return false
	}
	return o.Deliveries.Source != n.Deliveries.Source || o.DNSBL.Interval != n.DNSBL.Interval
}

// Serve runs the reader and the watcher until Shutdown.
func (l *repLoop) Serve(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	l.mu.Lock()
	l.cancel = cancel
	l.mu.Unlock()
	if l.reader != nil {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			in := l.d.opts.Stdin
			if in == nil {
				in = os.Stdin
			}
			// A followed file is never given up (the reader retries every
			// failure with back-off until ctx ends); standard input that
			// ends is logged by the reader and shown in /readyz.
			_ = l.reader.Run(ctx, in)
		}()
	}
	if l.watcher != nil {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			_ = l.watcher.Run(ctx)
		}()
	}
	<-ctx.Done()
	l.wg.Wait()
	return nil
}

// Shutdown stops the reader and the watcher.
func (l *repLoop) Shutdown(context.Context) error {
	l.mu.Lock()
	if l.cancel != nil {
		l.cancel()
	}
	l.mu.Unlock()
	l.wg.Wait()
	return nil
}

// Reputation returns the reputation service, reader and watcher (nil when
// not configured).
func (d *Daemon) Reputation() (*reputation.Service, *reputation.Reader, *reputation.Watcher) {
	if d.rep == nil {
		return nil, nil, nil
	}
	return d.rep.svc, d.rep.reader, d.rep.watcher
}

// components is the reader in /readyz: its state, the time of the last
// line read and its lag, degraded while it cannot read, its source ended
// or it is more than reputation.deliveries.max_lag behind.
func (l *repLoop) components() []admin.Component {
	if l == nil || l.reader == nil {
		return nil
	}
	snap := l.reader.Snapshot()
	return []admin.Component{{Name: "delivery_log", Degraded: snap.Degraded(l.svc.Reputation().Deliveries.MaxLag), Detail: snap}}
}

// API is the admin API's /api/reputation handler.
func (l *repLoop) API() http.Handler { return l.svc.API() }
