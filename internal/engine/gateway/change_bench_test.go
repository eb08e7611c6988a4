package gateway

import (
	"context"
	"log/slog"
	"net/netip"
	"strconv"
	"testing"

	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/customer"
	"github.com/aupguard/aupguard/internal/testkit/custgen"
)

// BenchmarkDirectoryChange10k is one live directory change (a customer
// added through the CLI's path) at 10,000 customers (custgen: one login,
// one login glob, one network, one domain each), as a gateway applies it
// (daemon.applyDirectory): the change validated and written, the
// effective config, the index updated from the running State's, and the
// State for it (Rebind). Its time and allocations per change are those of
// docs/capacity.md.
//
//	go test -run '^$' -bench DirectoryChange10k -benchmem -benchtime 200x ./internal/engine/gateway/
func BenchmarkDirectoryChange10k(b *testing.B) {
	m, st, done := changeSetup(b, 10_000)
	defer done()
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		id := "live" + strconv.Itoa(i)
		addr := "192.0.2." + strconv.Itoa(i%250)
		if _, err := m.Add(ctx, config.Customer{ID: id, Networks: []string{addr}, Domains: []string{id + ".example"}}, customer.ViaCLI); err != nil {
			b.Fatal(err)
		}
		eff, changed, err := m.EffectiveUpdate()
		if err != nil {
			b.Fatal(err)
		}
		dir, err := st.Dir.Update(eff, changed)
		if err != nil {
			b.Fatal(err)
		}
		if st, err = Rebind(st, eff, dir, changed); err != nil {
			b.Fatal(err)
		}
		if c, _ := st.Dir.Identify("", netip.MustParseAddr(addr)); c == nil || c.ID != id {
			b.Fatalf("the new customer is not identified: %v", c)
		}
	}
}

// changeSetup is a gateway's directory and State with n generated
// customers in its config file.
func changeSetup(b *testing.B, n int) (*customer.Manager, *State, func()) {
	b.Helper()
	var list []config.Customer
	for i := 0; i < n; i++ {
		id := "c" + strconv.Itoa(i)
		list = append(list, config.Customer{ID: id, Logins: []string{id, id + "-*"}, Networks: []string{custgen.Network(i)}, Domains: []string{id + ".example"}})
	}
	base, err := config.Parse([]byte("store: {backend: memory}\n"), "gw.yaml", ConfigOptions())
	if err != nil {
		b.Fatal(err)
	}
	if base, err = base.WithCustomers(list, ConfigOptions()); err != nil {
		b.Fatal(err)
	}
	deps, err := OpenDeps(base, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	s, err := customer.OpenStore(deps.Store)
	if err != nil {
		b.Fatal(err)
	}
	m := customer.NewManager(s, base, ConfigOptions(), nil)
	if _, err := m.Sync(context.Background()); err != nil {
		b.Fatal(err)
	}
	eff, _, err := m.EffectiveUpdate()
	if err != nil {
		b.Fatal(err)
	}
	st, err := Build(deps.WithConfig(eff))
	if err != nil {
		b.Fatal(err)
	}
	return m, st, func() { deps.Store.Close() }
}
