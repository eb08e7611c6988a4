package custgen

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"

	"github.com/aupguard/aupguard/internal/engine/config"
)

// TestNetworksHoldTheirAddressesAndDoNotOverlap: across each range the
// generator steps into, customer i's address lies in its own network and in
// no neighbour's.
func TestNetworksHoldTheirAddressesAndDoNotOverlap(t *testing.T) {
	for _, i := range []int{0, 1, 255, 256, 65535, 65536, 65536 + 16383, 65536 + 16384, 99999} {
		p := netip.MustParsePrefix(Network(i))
		a := netip.MustParseAddr(Addr(i))
		if !p.Contains(a) {
			t.Errorf("customer %d: %s not in %s", i, a, p)
		}
		for _, j := range []int{i - 1, i + 1} {
			if j >= 0 && netip.MustParsePrefix(Network(j)).Overlaps(p) {
				t.Errorf("customers %d and %d: %s overlaps %s", i, j, Network(j), p)
			}
		}
	}
}

// TestConfigIsAValidConfig: the generated file passes the gateway's own
// parsing and validation, one entry per customer.
func TestConfigIsAValidConfig(t *testing.T) {
	var b bytes.Buffer
	if err := Config(&b, Options{Customers: 300, Logins: 3, Store: "backend: memory"}); err != nil {
		t.Fatal(err)
	}
	if _, err := config.Parse(b.Bytes(), "gen.yaml", config.Options{}); err != nil {
		t.Fatalf("generated config refused: %v", err)
	}
	if n := strings.Count(b.String(), "\n  - id: c"); n != 300 {
		t.Errorf("%d customers, want 300", n)
	}
	if !strings.Contains(b.String(), "logins: [c7, c7-l1, c7-l2, \"c7-*\"]") {
		t.Errorf("customer 7's logins are not the documented ones:\n%.300s", b.String())
	}
}
