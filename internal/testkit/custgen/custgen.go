// Package custgen generates many customers for benchmarks, load runs and
// the scale figures of docs/performance.md: a config file's customers
// section (Config) and each generated customer's network and an address
// inside it (Network, Addr). Nothing in the gateway itself uses it.
package custgen

import (
	"bufio"
	"fmt"
	"io"
)

// Options shape a generated config (Config).
type Options struct {
	// Customers is the number of customers.
	Customers int
	// Logins is the number of exact SASL logins per customer (default 1);
	// every customer also gets one glob login ("cN-*").
	Logins int
	// Store, when not empty, is the store section written verbatim
	// (indented by the caller), e.g. "backend: memory".
	Store string
}

// Config writes a config with many customers: customer i has the logins
// "cI" and "cI-lJ", the glob "cI-*", the network Network(i) and the domain
// cI.example.
func Config(w io.Writer, o Options) error {
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
		fmt.Fprintf(bw, ", \"c%d-*\"]\n    networks: [%s]\n    domains: [c%d.example]\n", i, Network(i), i)
	}
	return bw.Flush()
}

// Network is the network Config gives customer i: a /24, or an IPv6 /48
// from customer 81,920 on.
func Network(i int) string {
	// 10.0.0.0/8 holds 65536 /24s, then 100.64.0.0/10 16384; IPv6 /48s
	// after that (the benchmarks go to 100,000).
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

// Addr is an address inside customer i's generated network (Network).
func Addr(i int) string {
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
