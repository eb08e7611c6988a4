package optout

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/store"
	"github.com/aupguard/aupguard/internal/testkit/testenv"
)

// TestMain lets the restart test run this binary as the "gateway" process
// it kills.
func TestMain(m *testing.M) {
	if dir := os.Getenv("OPTOUT_HELPER_DIR"); dir != "" {
		helperProcess(dir)
		return
	}
	os.Exit(m.Run())
}

// helperProcess adds opt-outs through the API handler as the gateway would,
// one by one, says how many were acknowledged, then waits to be killed.
func helperProcess(dir string) {
	n, _ := strconv.Atoi(os.Getenv("OPTOUT_HELPER_N"))
	cfg, err := config.Parse([]byte("optout: {keep_plain: true}\ncustomers: [{id: acme, networks: [192.0.2.1], domains: [acme.example]}]\n"), "helper.yaml", config.Options{})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	h, _ := store.Open(config.StoreConfig{Backend: "memory", Path: dir}, clock.System{})
	api, err := NewAPI(APIDeps{Store: h, Config: cfg, Secret: testKey, Clock: clock.System{}})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	for i := 0; i < n; i++ {
		code, body := doRaw(api, "POST", "/api/optouts", fmt.Sprintf(`{"list":"acme","address":"user%d@example.com"}`, i))
		if code != 201 {
			fmt.Println("error", code, body)
			os.Exit(1)
		}
		fmt.Println("ack", i)
	}
	fmt.Println("ready")
	time.Sleep(time.Hour)
}

// TestMemoryRestartAfterKill: opt-outs acknowledged by a process that is
// then killed with SIGKILL (no clean shutdown) are all there when the
// store is opened again.
func TestMemoryRestartAfterKill(t *testing.T) {
	dir := t.TempDir()
	const n = 200
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "OPTOUT_HELPER_DIR="+dir, "OPTOUT_HELPER_N="+strconv.Itoa(n))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked := 0
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "ack ") {
			acked++
		}
		if line == "ready" || strings.HasPrefix(line, "error") {
			if line != "ready" {
				t.Errorf("helper: %s", line)
			}
			break
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if acked != n {
		t.Fatalf("helper acknowledged %d of %d", acked, n)
	}
	cfg := testConfig(t, "")
	h, _ := store.Open(config.StoreConfig{Backend: "memory", Path: dir}, clock.System{})
	svc, err := NewService(h, cfg, testKey, nil, nil)
	if err != nil {
		t.Fatalf("reopen after kill: %v", err)
	}
	defer svc.Backend.(*memory).Close()
	for i := 0; i < n; i++ {
		if _, ok, err := svc.Check(bg, "acme", fmt.Sprintf("user%d@example.com", i)); !ok || err != nil {
			t.Fatalf("user%d lost after SIGKILL (%v)", i, err)
		}
	}
}

// TestMemoryTornRecordAndCompaction: a record cut by a crash is dropped,
// the rest kept, and a log grown by churn is compacted at open.
func TestMemoryTornRecordAndCompaction(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/optout.log"
	m, err := openMemory(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 1500; i++ {
		h := fmt.Sprintf("%032x", i)
		m.Add(bg, []Entry{entry("c1", h, SourceAPI)})
		if i%2 == 0 {
			m.Remove(bg, "c1", h)
		}
	}
	m.SetFlag(bg, "c1", Flag{Reason: "manual", Since: t0})
	m.Close()
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"op":"add","e":{"list":"c1","ha`)
	f.Close()
	before, _ := os.Stat(path)
	m, err = openMemory(path, nil)
	if err != nil {
		t.Fatalf("reopen with a torn record: %v", err)
	}
	defer m.Close()
	if n, _ := m.Len(bg, "c1"); n != 750 {
		t.Fatalf("%d entries after reopen, want 750", n)
	}
	if f, _ := m.GetFlag(bg, "c1"); f == nil {
		t.Fatal("flag lost")
	}
	after, _ := os.Stat(path)
	if after.Size() >= before.Size() {
		t.Fatalf("log not compacted: %d → %d bytes", before.Size(), after.Size())
	}
	data, _ := os.ReadFile(path)
	if !bytes.HasSuffix(data, []byte("\n")) {
		t.Fatal("compacted log does not end in a complete record")
	}
}

// TestMemoryCorruptRecordRefused: a bad record in the middle of the log is
// not silently skipped (opt-outs after it would be lost).
func TestMemoryCorruptRecordRefused(t *testing.T) {
	path := t.TempDir() + "/optout.log"
	os.WriteFile(path, []byte(`{"op":"add","e":{"list":"c1","hash":"`+hA+`"}}`+"\nnot json\n"+`{"op":"add","e":{"list":"c1","hash":"`+hB+`"}}`+"\n"), 0o600)
	if _, err := openMemory(path, nil); err == nil || !strings.Contains(err.Error(), ":2: corrupt record") {
		t.Fatalf("open = %v, want a corrupt record error at line 2", err)
	}
}

// TestRedisRestartAfterKill: with AOF on, opt-outs acknowledged by the API
// survive Redis being killed with SIGKILL.
func TestRedisRestartAfterKill(t *testing.T) {
	r := testenv.StartRedis(t, testenv.RedisOptions{AppendOnly: true})
	cfg := testConfig(t, "")
	h, err := store.Open(config.StoreConfig{Backend: "redis", Timeout: 5 * time.Second,
		Redis: config.RedisConfig{Addrs: []string{r.Addr()}, KeyPrefix: "t:"}}, clock.System{})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	api, err := NewAPI(APIDeps{Store: h, Config: cfg, Secret: testKey})
	if err != nil {
		t.Fatal(err)
	}
	const n = 100
	for i := 0; i < n; i++ {
		if code, body := doRaw(api, "POST", "/api/optouts", fmt.Sprintf(`{"list":"acme","address":"user%d@example.com"}`, i)); code != 201 {
			t.Fatalf("add %d: %d %s", i, code, body)
		}
	}
	r.Kill()
	r.Start()
	svc, _ := NewService(h, cfg, testKey, nil, nil)
	for i := 0; i < n; i++ {
		var ok bool
		var err error
		for try := 0; try < 20; try++ { // the client reconnects
			if _, ok, err = svc.Check(bg, "acme", fmt.Sprintf("user%d@example.com", i)); err == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if !ok || err != nil {
			t.Fatalf("user%d lost after Redis SIGKILL (%v)", i, err)
		}
	}
}

// TestMemoryCountersPersist: complaint and opted-out counts survive a
// crash (logged as they happen); delivered counts survive a clean Close.
func TestMemoryCountersPersist(t *testing.T) {
	path := t.TempDir() + "/optout.log"
	rate := NewWindow(7 * 24 * time.Hour)
	m, err := openMemory(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	m.Count(bg, "c1", KindComplaint, 2, rate, t0)
	m.Count(bg, "c1", KindDelivered, 500, rate, t0)
	m.Hit(bg, "c1", rate, 0, t0)
	m.Close()
	m, err = openMemory(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	sums, _ := m.Sums(bg, "c1", rate, t0, KindComplaint, KindDelivered, KindOptedOut)
	if sums[0] != 2 || sums[1] != 500 || sums[2] != 1 {
		t.Fatalf("after clean close: %v, want [2 500 1]", sums)
	}
	m.Count(bg, "c1", KindComplaint, 1, rate, t0)
	// Crash: the log is dropped without Close (no delivered snapshot).
	m.log.Close()
	m.lock.Close()
	m, err = openMemory(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	sums, _ = m.Sums(bg, "c1", rate, t0, KindComplaint, KindDelivered)
	if sums[0] != 3 || sums[1] != 500 {
		t.Fatalf("after crash: %v, want [3 500]", sums)
	}
}
