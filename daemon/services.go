package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/aupguard/aupguard/gateway"
	"github.com/aupguard/aupguard/optout"
)

// httpService is an HTTP listener run beside the milter.
type httpService struct {
	name string
	ln   net.Listener
	srv  *http.Server
}

func newHTTPService(name, addr string, h http.Handler) (*httpService, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s listen %s: %w", name, addr, err)
	}
	return &httpService{name: name, ln: ln, srv: &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute,
		WriteTimeout:      time.Minute,
		IdleTimeout:       2 * time.Minute,
	}}, nil
}

func (s *httpService) Serve(ctx context.Context) error {
	err := s.srv.Serve(s.ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

func (s *httpService) Shutdown(ctx context.Context) error { return s.srv.Shutdown(ctx) }

// ServiceAddr returns the address of an extra listener by name
// ("unsubscribe", "admin"), or nil when it does not run.
func (d *Daemon) ServiceAddr(name string) net.Addr {
	for _, s := range d.extras {
		if h, ok := s.(*httpService); ok && h.name == name {
			return h.ln.Addr()
		}
	}
	return nil
}

// services builds the decision observers (events, metrics) and the extra
// listeners (admin API, public unsubscribe endpoint) the config asks for.
func services(d *Daemon) ([]gateway.Observer, []Service, error) {
	var obs []gateway.Observer
	var svcs []Service
	cfg := d.cfg
	apiDeps := optout.APIDeps{Store: d.deps.Store, Config: cfg, Secret: d.deps.Secret, Logger: d.log, Clock: d.deps.Clock}
	if l := cfg.OptOut.Unsubscribe.Listen; l != "" && l != "off" {
		h, err := optout.NewUnsubscribeHandler(apiDeps)
		if err != nil {
			return nil, nil, err
		}
		s, err := newHTTPService("unsubscribe", l, h)
		if err != nil {
			return nil, nil, err
		}
		svcs = append(svcs, s)
		d.log.Info("unsubscribe endpoint listening", "addr", s.ln.Addr().String(), "base_url", cfg.OptOut.Unsubscribe.BaseURL)
	}
	return obs, svcs, nil
}

// closeObservers flushes the observers at shutdown.
func closeObservers(d *Daemon) {}
