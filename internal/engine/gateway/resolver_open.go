package gateway

import (
	"github.com/aupguard/aupguard/internal/engine/setup"
	"github.com/aupguard/aupguard/internal/resolver"
)

// openResolver sets d.Resolver from the config's dns section: ONE caching
// resolver (resolver.Cache: TTLs capped by dns.max_ttl, RFC 2308 negative
// caching, shared in-flight queries, every wait bounded by dns.timeout)
// for every check of the process, kept across reloads (Deps.WithConfig).
// A caller that already set a resolver (a test's fake) keeps it.
func openResolver(d *setup.Deps) error {
	if d.Resolver != nil {
		return nil
	}
	c, err := resolver.New(d.Config.DNS, d.Clock)
	if err != nil {
		return err
	}
	d.Resolver = c
	return nil
}
