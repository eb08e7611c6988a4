package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"testing"

	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/customer"
	"github.com/aupguard/aupguard/internal/testkit/custgen"
)

// BenchmarkDirectoryApply is what a gateway does for one live directory
// change at 100,000 customers and 1,000,000 logins, as the daemon does it:
// validate and write the change, the effective config, the index updated
// from the running State's, and the State (the chain's checks) built
// around it.
//
//	go test -run '^$' -bench DirectoryApply -benchtime 3x ./gateway/
func BenchmarkDirectoryApply(b *testing.B) {
	base, err := config.Parse([]byte("store: {backend: memory}\n"), "gw.yaml", ConfigOptions())
	if err != nil {
		b.Fatal(err)
	}
	list := make([]config.Customer, 100_000)
	for i := range list {
		c := &list[i]
		c.ID = "c" + strconv.Itoa(i)
		c.Logins = append(c.Logins, c.ID)
		for j := 1; j < 9; j++ {
			c.Logins = append(c.Logins, fmt.Sprintf("c%d-l%d", i, j))
		}
		c.Logins = append(c.Logins, c.ID+"-*")
		c.Networks = []string{custgen.Network(i)}
		c.Domains = []string{c.ID + ".example"}
	}
	if base, err = base.WithCustomers(list, ConfigOptions()); err != nil {
		b.Fatal(err)
	}
	deps, err := OpenDeps(base, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	defer deps.Store.Close()
	s, _ := customer.OpenStore(deps.Store)
	m := customer.NewManager(s, base, ConfigOptions(), nil)
	ctx := context.Background()
	if _, err := m.Sync(ctx); err != nil {
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
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		id := "live" + strconv.Itoa(i)
		if _, err := m.Add(ctx, config.Customer{ID: id, Networks: []string{"192.0.2." + strconv.Itoa(i%250)}, Domains: []string{id + ".example"}}, customer.ViaCLI); err != nil {
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
		d := deps.WithConfig(eff)
		d.Directory = dir
		if st, err = Build(d); err != nil {
			b.Fatal(err)
		}
		if c, _ := st.Dir.Identify("", netip.MustParseAddr("192.0.2."+strconv.Itoa(i%250))); c == nil || c.ID != id {
			b.Fatalf("the new customer is not identified: %v", c)
		}
	}
}
