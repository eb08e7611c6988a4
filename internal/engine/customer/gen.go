package customer

import (
	"bufio"
	"fmt"
	"io"
)

// GenOptions shape a generated config (GenerateConfig).
type GenOptions struct {
	// Customers is the number of customers.
	Customers int
	// Logins is the number of exact SASL logins per customer (default 1);
	// every customer also gets one glob login ("cN-*").
	Logins int
	// Store, when not empty, is the store section written verbatim
	// (indented by the caller), e.g. "backend: memory".
	Store string
}

// GenerateConfig writes a config with many customers, for benchmarks and
// the scale figures of docs/performance.md: customer i has the logins
// "cI" and "cI-lJ", the glob "cI-*", the network 10.x.y.0/24 (i-th /24 of
// 10.0.0.0/8, then of 172.16.0.0/12 ...) and the domain cI.example.
func GenerateConfig(w io.Writer, o GenOptions) error {
	if o.Logins <= 0 {
		o.Logins = 1
	}
	bw := bufio.NewWriterSize(w, 1<<16)
	if o.Store != "" {
		fmt.Fprintf(bw, "store:\n  %s\n", o.Store)
	}
	fmt.Fprintln(bw, "customers:")
	for i := 0; i < o.Customers; i++ {
		fmt.Fprintf(bw, "  - id: c%d\n    logins: [c%d", i, i)
		for j := 1; j < o.Logins; j++ {
			fmt.Fprintf(bw, ", c%d-l%d", i, j)
		}
		fmt.Fprintf(bw, ", \"c%d-*\"]\n    networks: [%s]\n    domains: [c%d.example]\n", i, GenNetwork(i), i)
	}
	return bw.Flush()
}

// GenNetwork is the /24 GenerateConfig gives customer i.
func GenNetwork(i int) string {
	// 10.0.0.0/8 holds 65536 /24s; then 100.64.0.0/10 (16384), then
	// 172.16.0.0/12 (4096)... enough for the benchmarks' 100,000 with
	// IPv6 /48s after that.
	switch {
	case i < 65536:
		return fmt.Sprintf("10.%d.%d.0/24", i>>8, i&255)
	case i < 65536+16384:
		j := i - 65536
		return fmt.Sprintf("100.%d.%d.0/24", 64+j>>8, j&255)
	default:
		j := i - 65536 - 16384
		return fmt.Sprintf("2001:db8:%x::/48", j)
	}
}

// GenAddr is an address inside customer i's generated network.
func GenAddr(i int) string {
	switch {
	case i < 65536:
		return fmt.Sprintf("10.%d.%d.7", i>>8, i&255)
	case i < 65536+16384:
		j := i - 65536
		return fmt.Sprintf("100.%d.%d.7", 64+j>>8, j&255)
	default:
		j := i - 65536 - 16384
		return fmt.Sprintf("2001:db8:%x::7", j)
	}
}
