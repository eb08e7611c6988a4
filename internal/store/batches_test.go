package store_test

import (
	"context"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/store"
	"github.com/aupguard/aupguard/internal/testkit/testenv"
)

// famA and famB each have a lib.lua defining a local function of the same
// name: each family's procs see their own only.
var (
	famA = fstest.MapFS{
		"lib.lua":  {Data: []byte("local function tag(x) return 'a:' .. x end\n")},
		"echo.lua": {Data: []byte("return tag(ARGV[1])\n")},
		"incr.lua": {Data: []byte("return redis.call('INCRBY', KEYS[1], ARGV[1])\n")},
	}
	famB = fstest.MapFS{
		"lib.lua":  {Data: []byte("local function tag(x) return 'b:' .. x end\n")},
		"echo.lua": {Data: []byte("return tag(ARGV[1])\n")},
	}
)

// TestFamilyLuaOnOneStore: two families register their Lua on one store at
// setup; one batch runs both families' procs in one script, each with its
// own library; a reload registers the same files again and gets the same
// procs; other files under a registered family's name are refused; a proc
// not registered on the store fails its batch with an error (no panic);
// a family's file also runs as a stand-alone script.
func TestFamilyLuaOnOneStore(t *testing.T) {
	r := testenv.StartRedis(t, testenv.RedisOptions{})
	h, err := store.Open(config.StoreConfig{Backend: "redis", Timeout: 2 * time.Second, Redis: config.RedisConfig{Addrs: []string{r.Addr()}, KeyPrefix: "t:"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	ctx := context.Background()
	a, err := h.RegisterLua("a", famA)
	if err != nil {
		t.Fatal(err)
	}
	b, err := h.RegisterLua("b", famB)
	if err != nil {
		t.Fatal(err)
	}

	sb := h.NewBatch()
	key := h.CustomerKey("acme", "n")
	calls := []*store.Call{
		sb.Proc(a.Proc("echo"), nil, "x"),
		sb.Proc(b.Proc("echo"), nil, "y"),
		sb.Proc(a.Proc("incr"), []string{key}, 5),
	}
	if err := sb.Exec(ctx); err != nil {
		t.Fatalf("batch: %v", err)
	}
	want := []any{"a:x", "b:y", int64(5)}
	for i, c := range calls {
		v, err := c.Result()
		if err != nil || v != want[i] {
			t.Errorf("call %d: %v, %v; want %v", i, v, err, want[i])
		}
	}

	t.Run("reload gets the same procs", func(t *testing.T) {
		again, err := h.RegisterLua("a", famA)
		if err != nil || again.Proc("echo") != a.Proc("echo") {
			t.Fatalf("re-registering: %v, same proc %v", err, again != nil && again.Proc("echo") == a.Proc("echo"))
		}
	})
	t.Run("other files under a registered name", func(t *testing.T) {
		if _, err := h.RegisterLua("a", famB); err == nil || !strings.Contains(err.Error(), "registered twice") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("a proc of another store", func(t *testing.T) {
		other, err := store.Open(config.StoreConfig{Backend: "redis", Timeout: time.Second, Redis: config.RedisConfig{Addrs: []string{r.Addr()}}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer other.Close()
		ob := other.NewBatch()
		c := ob.Proc(a.Proc("echo"), nil, "x")
		if err := ob.Exec(ctx); err == nil || !strings.Contains(err.Error(), "not registered") {
			t.Fatalf("Exec = %v", err)
		}
		if _, err := c.Result(); err == nil {
			t.Fatal("the call of an unregistered proc has no error")
		}
	})
	t.Run("stand-alone script", func(t *testing.T) {
		n, err := a.Script("incr").Run(ctx, h.Client, []string{key}, 2).Int()
		if err != nil || n != 7 {
			t.Fatalf("incr = %d, %v; want 7", n, err)
		}
		s, err := b.Script("echo").Run(ctx, h.Client, nil, "z").Text()
		if err != nil || s != "b:z" {
			t.Fatalf("echo = %q, %v", s, err)
		}
	})
	t.Run("registered after batches ran", func(t *testing.T) {
		c, err := h.RegisterLua("c", fstest.MapFS{"one.lua": {Data: []byte("return 1\n")}})
		if err != nil {
			t.Fatal(err)
		}
		nb := h.NewBatch()
		call := nb.Proc(c.Proc("one"), nil)
		if err := nb.Exec(ctx); err != nil {
			t.Fatal(err)
		}
		if v, _ := call.Result(); v != int64(1) {
			t.Fatalf("one = %v", v)
		}
	})
}

// TestReadLuaRefusesBadFolders: a family without .lua files, a bad family
// name and a file name that cannot be a proc name are errors at setup.
func TestReadLuaRefusesBadFolders(t *testing.T) {
	tests := []struct {
		name   string
		family string
		fsys   fstest.MapFS
	}{
		{"no lua files", "x", fstest.MapFS{"README": {Data: []byte("x")}}},
		{"only a library", "x", fstest.MapFS{"lib.lua": {Data: []byte("local a = 1")}}},
		{"dotted family", "x.y", famA},
		{"dotted file", "x", fstest.MapFS{"a.b.lua": {Data: []byte("return 1")}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h *store.Handle
			if _, err := h.RegisterLua(tt.family, tt.fsys); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}
