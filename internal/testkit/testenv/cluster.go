package testenv

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// clusterReadyTimeout bounds the wait for cluster_state:ok on every node.
const clusterReadyTimeout = 30 * time.Second

// RedisCluster is a private Redis Cluster of three masters without replicas,
// all on 127.0.0.1.
type RedisCluster struct {
	t     testing.TB
	nodes []*Redis
}

// StartRedisCluster starts three redis-server nodes in cluster mode on free
// loopback ports (client and cluster-bus ports are both chosen freely),
// joins them with "redis-cli --cluster create" so that each owns a third of
// the hash slots, and waits until every node reports cluster_state:ok.
func StartRedisCluster(t testing.TB) *RedisCluster {
	t.Helper()
	Need(t, "redis-server", "redis-cli")
	const n = 3
	// Client ports and cluster-bus ports, all distinct.
	ports, err := freePorts(2 * n)
	if err != nil {
		t.Fatal(err)
	}
	rc := &RedisCluster{t: t}
	for i := range n {
		dir := t.TempDir()
		r := newRedis(t, ports[i], dir, []string{
			"--cluster-enabled", "yes",
			"--cluster-config-file", filepath.Join(dir, "nodes.conf"),
			"--cluster-port", strconv.Itoa(ports[n+i]),
			"--cluster-node-timeout", "5000",
			"--save", "",
			"--appendonly", "no",
		})
		if err := r.start(); err != nil {
			t.Fatal(err)
		}
		rc.nodes = append(rc.nodes, r)
	}

	args := []string{"--cluster", "create"}
	args = append(args, rc.Addrs()...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	ctx, cancel := context.WithTimeout(context.Background(), clusterReadyTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, mustBin(t, "redis-cli"), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("testenv: redis-cli %s: %v\n%s\n%s", strings.Join(args, " "), err, out, rc.logs())
	}

	if err := rc.waitOK(ctx); err != nil {
		t.Fatalf("testenv: %v\nredis-cli output:\n%s\n%s", err, out, rc.logs())
	}
	return rc
}

// Addrs returns the "127.0.0.1:port" addresses of the three masters.
func (rc *RedisCluster) Addrs() []string {
	addrs := make([]string, len(rc.nodes))
	for i, n := range rc.nodes {
		addrs[i] = n.Addr()
	}
	return addrs
}

// Nodes returns the cluster's nodes, e.g. to Kill one of them.
func (rc *RedisCluster) Nodes() []*Redis { return rc.nodes }

// Client returns a new go-redis cluster client, closed by t.Cleanup.
func (rc *RedisCluster) Client() *redis.ClusterClient {
	c := redis.NewClusterClient(&redis.ClusterOptions{
		Addrs:                    rc.Addrs(),
		DisableIdentity:          true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
	rc.t.Cleanup(func() { c.Close() })
	return c
}

// waitOK polls CLUSTER INFO on every node until all report
// cluster_state:ok and see all three nodes.
func (rc *RedisCluster) waitOK(ctx context.Context) error {
	clients := make([]*redis.Client, len(rc.nodes))
	for i, n := range rc.nodes {
		clients[i] = redis.NewClient(&redis.Options{
			Addr:                     n.Addr(),
			DisableIdentity:          true,
			MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
			MaxRetries:               -1,
		})
		defer clients[i].Close()
	}
	want := fmt.Sprintf("cluster_known_nodes:%d", len(rc.nodes))
	var last string
	for {
		ready := true
		for i, c := range clients {
			info, err := c.ClusterInfo(ctx).Result()
			if err != nil {
				last = fmt.Sprintf("%s: %v", rc.nodes[i].Addr(), err)
				ready = false
				break
			}
			if !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, want) {
				last = fmt.Sprintf("%s:\n%s", rc.nodes[i].Addr(), info)
				ready = false
				break
			}
		}
		if ready {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("redis cluster did not reach cluster_state:ok within %v; last CLUSTER INFO: %s", clusterReadyTimeout, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// logs returns the log tails of all nodes, for error messages.
func (rc *RedisCluster) logs() string {
	var b strings.Builder
	for _, n := range rc.nodes {
		fmt.Fprintf(&b, "--- redis node %s log:\n%s\n", n.Addr(), n.Log())
	}
	return b.String()
}
