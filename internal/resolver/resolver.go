// Package resolver is the DNS resolver every check uses: one upstream, a
// TTL-honouring cache with negative caching (RFC 2308), and de-duplication
// of concurrent identical queries.
package resolver

import (
	"context"
	"net"
)

// Resolver is the small DNS interface the checks depend on. Its method set
// matches what blitiri.com.ar/go/spf and go-msgauth need.
type Resolver interface {
	LookupTXT(ctx context.Context, name string) ([]string, error)
	LookupMX(ctx context.Context, name string) ([]*net.MX, error)
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
	LookupAddr(ctx context.Context, addr string) ([]string, error)
}
