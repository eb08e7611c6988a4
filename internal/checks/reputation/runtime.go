package reputation

import (
	"context"
	"fmt"
	"github.com/aupguard/aupguard/internal/observability/access"
	"net/http"
	"sync"

	"github.com/aupguard/aupguard/internal/checks/optout"
	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/setup"
)

// serviceKey is the family's one Service in setup.Shared: the check, the
// reader, the watcher, the API and the metrics share it (and its state).
const serviceKey = "reputation.service"

// service returns the family's Service: the daemon's one (d.Shared, its
// config replaced at each reload by the Host's hook), or a new one for a
// one-shot run.
func service(d *setup.Deps) (*Service, error) {
	mk := func() (any, error) { return NewService(d.Store, d.Config, d.Secret, d.Clock, d.Logger) }
	if d.Shared == nil {
		v, err := mk()
		if err != nil {
			return nil, err
		}
		return v.(*Service), nil
	}
	v, err := d.Shared.Make(serviceKey, mk)
	if err != nil {
		return nil, err
	}
	return v.(*Service), nil
}

// loop runs the delivery-log reader and the blocklist watcher beside the
// milter (each only when configured).
type loop struct {
	svc     *Service
	reader  *Reader
	watcher *Watcher
	host    *setup.Host

	mu     sync.Mutex
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// runtimeKey keeps the daemon's loop in setup.Shared (Running).
const runtimeKey = "reputation.loop"

// Running returns the daemon's reputation service, reader and watcher
// (nil when not configured; all nil when h is not a daemon's Host).
func Running(h *setup.Host) (*Service, *Reader, *Watcher) {
	if h == nil || h.Deps.Shared == nil {
		return nil, nil, nil
	}
	v, _ := h.Deps.Shared.Lookup(runtimeKey)
	l, ok := v.(*loop)
	if !ok {
		return nil, nil, nil
	}
	return l.svc, l.reader, l.watcher
}

// setupRuntime registers the family's runtime: the reader and the
// watcher (a service), the reader's state in /readyz, the metrics, the
// admin API's /api/reputation, and the config's replacement at reload.
func setupRuntime(h *setup.Host) error {
	if !h.Serving {
		return nil
	}
	svc, err := service(h.Deps)
	if err != nil {
		return err
	}
	cfg, log := h.Config(), svc.Log
	l := &loop{svc: svc, host: h}
	rep := svc.Reputation()
	if rep.Deliveries.Source != "" {
		l.reader = NewReader(svc)
		inChain := false
		for _, c := range cfg.Chain {
			inChain = inChain || c == CheckName
		}
		if !inChain || !cfg.CheckEnabled(CheckName) {
			log.Warn("reputation.deliveries.source is set but check bounce_rate is not in the chain or disabled: no queue id is remembered, no result can be matched to a customer")
		}
		if !rep.Deliveries.Egress.IsValid() && len(rep.Deliveries.Transports) == 0 {
			log.Warn("reputation.deliveries.egress unknown (provider.egress_ips has not exactly one address): listing reports cannot rank senders per address")
		}
	}
	if len(rep.DNSBL.Zones) > 0 {
		if h.Deps.Resolver == nil {
			return fmt.Errorf("reputation.dnsbl: no resolver")
		}
		l.watcher = NewWatcher(svc, h.Deps.Resolver)
		st := h.Deps.Store
		l.watcher.Complaints = func(ctx context.Context, id string) (int64, int64, float64, error) {
			s, err := optout.Status(ctx, st, svc.Config(), id)
			return s.Complaints, s.Delivered, s.ComplaintRate, err
		}
		if h.MailPostmaster != nil {
			l.watcher.Notify = h.MailPostmaster
		}
		if cfg.Provider.Postmaster == "" || cfg.Reports.SMTP.Host == "" {
			log.Warn("blocklist watch: provider.postmaster or reports.smtp.host not set: listings are logged and counted, not mailed")
		}
	}
	if h.Deps.Shared != nil {
		h.Deps.Shared.Get(runtimeKey, func() any { return l })
	}
	h.Collector(&Collector{Service: svc, Reader: l.reader, Watcher: l.watcher, Top: cfg.Admin.MetricsTopCustomers})
	h.AdminRoute("/api/reputation", svc.API())
	// A scoped token reads its own customers' standing.
	h.AdminRoute("/api/reputation/{customer}", svc.API(), access.Methods(map[string]access.Scope{http.MethodGet: access.Path("customer")}))
	h.Component(l.components)
	if l.reader != nil || l.watcher != nil {
		h.Service(l)
	}
	h.OnReload(func(n *config.Config) error {
		if needsRestart(h.Config(), n) {
			log.Warn("reputation.deliveries.source and reputation.dnsbl.interval changes take effect at restart")
		}
		svc.SetConfig(n)
		return nil
	})
	return nil
}

// needsRestart reports whether a reload changes reputation settings that
// take effect only at restart: the delivery source and the blocklist
// interval.
func needsRestart(old, cfg *config.Config) bool {
	o, errOld := ConfigOf(old)
	n, errNew := ConfigOf(cfg)
	if errOld != nil || errNew != nil {
		return false
	}
	return o.Deliveries.Source != n.Deliveries.Source || o.DNSBL.Interval != n.DNSBL.Interval
}

// Serve runs the reader and the watcher until Shutdown.
func (l *loop) Serve(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	l.mu.Lock()
	l.cancel = cancel
	l.mu.Unlock()
	if l.reader != nil {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			// A followed file is never given up (the reader retries every
			// failure with back-off until ctx ends); standard input that
			// ends is logged by the reader and shown in /readyz.
			_ = l.reader.Run(ctx, l.host.Stdin)
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
func (l *loop) Shutdown(context.Context) error {
	l.mu.Lock()
	if l.cancel != nil {
		l.cancel()
	}
	l.mu.Unlock()
	l.wg.Wait()
	return nil
}

// components is the reader in /readyz: its state, the time of the last
// line read and its lag, degraded while it cannot read, its source ended
// or it is more than reputation.deliveries.max_lag behind.
func (l *loop) components() []setup.Component {
	if l.reader == nil {
		return nil
	}
	snap := l.reader.Snapshot()
	return []setup.Component{{Name: "delivery_log", Degraded: snap.Degraded(l.svc.Reputation().Deliveries.MaxLag), Detail: snap}}
}
