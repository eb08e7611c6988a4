package main

import (
	"errors"
	"io"

	"github.com/aupguard/aupguard/internal/checks/optout"
	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/gateway"
	"github.com/aupguard/aupguard/internal/secrets"
	"github.com/aupguard/aupguard/internal/store"
)

// openOptout opens the opt-out service on the store of the config at
// path, as the optout and complaint commands do (tests seed it).
func openOptout(path string) (*optout.Service, func(), error) {
	cfg, err := config.Load(path, gateway.ConfigOptions())
	if err != nil {
		return nil, nil, err
	}
	h, err := store.Open(cfg.Store, clock.System{})
	if err != nil {
		return nil, nil, err
	}
	key, ephemeral, err := secrets.Load(cfg.SecretFile, cfg.Store.Path)
	if err != nil || ephemeral {
		h.Close()
		return nil, nil, errors.Join(err, errors.New("no persistent secret"))
	}
	svc, err := optout.NewService(h, cfg, key, clock.System{}, nil)
	if err != nil {
		h.Close()
		return nil, nil, err
	}
	return svc, func() {
		if c, ok := svc.Backend.(io.Closer); ok {
			c.Close()
		}
		h.Close()
	}, nil
}
