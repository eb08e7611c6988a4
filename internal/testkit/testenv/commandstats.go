package testenv

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"
)

// CommandStat is one command's line of INFO commandstats.
type CommandStat struct{ Calls, Usec int64 }

// CommandStats reads INFO commandstats (summed over every master of a
// Cluster) by command, as Redis names it ("evalsha", "config|resetstat").
// The commands a test sends to read or reset the statistics themselves
// (info, config|resetstat) are left out.
func CommandStats(tb testing.TB, c redis.UniversalClient) map[string]CommandStat {
	tb.Helper()
	out := map[string]CommandStat{}
	var mu sync.Mutex // ForEachMaster runs the nodes concurrently
	add := func(info string) {
		mu.Lock()
		defer mu.Unlock()
		for _, line := range strings.Split(info, "\n") {
			name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
			name, isStat := strings.CutPrefix(name, "cmdstat_")
			if !ok || !isStat || name == "info" || name == "config|resetstat" {
				continue
			}
			st := out[name]
			for _, kv := range strings.Split(rest, ",") {
				k, v, _ := strings.Cut(kv, "=")
				n, _ := strconv.ParseInt(v, 10, 64)
				switch k {
				case "calls":
					st.Calls += n
				case "usec":
					st.Usec += n
				}
			}
			out[name] = st
		}
	}
	ctx := context.Background()
	if cc, ok := c.(*redis.ClusterClient); ok {
		if err := cc.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error {
			s, err := n.Info(ctx, "commandstats").Result()
			add(s)
			return err
		}); err != nil {
			tb.Fatal(err)
		}
		return out
	}
	s, err := c.Info(ctx, "commandstats").Result()
	if err != nil {
		tb.Fatal(err)
	}
	add(s)
	return out
}

// ScriptStats sums commandstats: the script calls (eval, evalsha), their
// usec (server time, the commands they ran included), and every other
// command (run inside the scripts or alone).
func ScriptStats(stats map[string]CommandStat) (calls, usec, others int64) {
	for name, st := range stats {
		if name == "evalsha" || name == "eval" {
			calls += st.Calls
			usec += st.Usec
		} else {
			others += st.Calls
		}
	}
	return calls, usec, others
}
