package store_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/store"
	"github.com/aupguard/aupguard/internal/testkit/testenv"
)

var counter = redis.NewScript(`return redis.call('INCRBY', KEYS[1], ARGV[1])`)

// exercise runs what every backend of the gateway relies on: ping, script
// preloading and EVALSHA on a customer's hash-tagged key.
func exercise(t *testing.T, h *store.Handle) {
	t.Helper()
	ctx := context.Background()
	if err := h.Ping(ctx); err != nil {
		t.Fatalf("ping: %v", err)
	}
	if err := h.LoadScripts(ctx, counter); err != nil {
		t.Fatalf("load scripts: %v", err)
	}
	key := h.CustomerKey("acme", "test")
	for i := 1; i <= 3; i++ {
		n, err := counter.Run(ctx, h.Client, []string{key}, 2).Int()
		if err != nil || n != 2*i {
			t.Fatalf("script run %d: %d %v", i, n, err)
		}
	}
}

func TestStandaloneAndCluster(t *testing.T) {
	t.Run("standalone", func(t *testing.T) {
		r := testenv.StartRedis(t, testenv.RedisOptions{})
		h, err := store.Open(config.StoreConfig{Backend: "redis", Timeout: time.Second, Redis: config.RedisConfig{Addrs: []string{r.Addr()}, KeyPrefix: "t:"}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		exercise(t, h)
	})
	t.Run("cluster", func(t *testing.T) {
		c := testenv.StartRedisCluster(t)
		h, err := store.Open(config.StoreConfig{Backend: "redis", Timeout: time.Second, Redis: config.RedisConfig{Addrs: c.Addrs(), Cluster: true, KeyPrefix: "t:"}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		if _, ok := h.Client.(*redis.ClusterClient); !ok {
			t.Fatalf("cluster config gave %T", h.Client)
		}
		exercise(t, h)
	})
}

// TestSentinel starts a master and a real Sentinel watching it; the store
// finds the master through Sentinel (store.redis.master_name).
func TestSentinel(t *testing.T) {
	testenv.Need(t, "redis-server")
	master := testenv.StartRedis(t, testenv.RedisOptions{})
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	dir := t.TempDir()
	host, mport, _ := net.SplitHostPort(master.Addr())
	conf := filepath.Join(dir, "sentinel.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nsentinel monitor mymaster %s %s 1\n", port, dir, host, mport)), 0o600)
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		bin = "/usr/bin/redis-server"
	}
	cmd := exec.Command(bin, conf, "--sentinel")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	sentinel := fmt.Sprintf("127.0.0.1:%d", port)
	sc := redis.NewSentinelClient(&redis.Options{Addr: sentinel})
	defer sc.Close()
	deadline := time.Now().Add(15 * time.Second)
	for {
		addr, err := sc.GetMasterAddrByName(context.Background(), "mymaster").Result()
		if err == nil && len(addr) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sentinel does not know the master: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	h, err := store.Open(config.StoreConfig{Backend: "redis", Timeout: time.Second, Redis: config.RedisConfig{Addrs: []string{sentinel}, MasterName: "mymaster", KeyPrefix: "t:"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	exercise(t, h)
	// The write landed on the master itself.
	if v, err := master.Client().Get(context.Background(), h.CustomerKey("acme", "test")).Int(); err != nil || v != 6 {
		t.Fatalf("master holds %d, %v", v, err)
	}
}

func TestOutageIsUnavailable(t *testing.T) {
	r := testenv.StartRedis(t, testenv.RedisOptions{})
	h, _ := store.Open(config.StoreConfig{Backend: "redis", Timeout: 200 * time.Millisecond, Redis: config.RedisConfig{Addrs: []string{r.Addr()}, DialTimeout: 200 * time.Millisecond}}, nil)
	defer h.Close()
	r.Stop()
	if err := h.Ping(context.Background()); err == nil {
		t.Fatal("ping succeeded with Redis stopped")
	} else if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("outage error %v is not ErrUnavailable", err)
	}
	r.Start()
	// The circuit breaker fails calls fast until its background probe
	// sees Redis again (within its back-off, at most half a second).
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := h.Ping(context.Background())
		if err == nil {
			break
		}
		if !errors.Is(err, store.ErrCircuitOpen) || time.Now().After(deadline) {
			t.Fatalf("after restart: %v (breaker %+v)", err, h.Breaker.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
