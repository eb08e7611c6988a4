package testenv

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// redisStartTimeout bounds how long a redis-server may take to answer PING
// after it was started (this includes replaying the append-only file).
const redisStartTimeout = 15 * time.Second

// redisStopTimeout bounds how long Stop waits for a clean shutdown before it
// falls back to SIGKILL.
const redisStopTimeout = 10 * time.Second

// RedisOptions configures [StartRedis].
type RedisOptions struct {
	// AppendOnly enables the append-only file with "appendfsync always", so
	// that every acknowledged write survives Kill.
	AppendOnly bool
	// Save is the RDB snapshot schedule passed as --save, e.g. "60 1".
	// Empty disables RDB snapshots altogether.
	Save string
	// ExtraArgs are appended to the redis-server command line, e.g.
	// []string{"--maxmemory", "10mb"}.
	ExtraArgs []string
}

// Redis is a private redis-server listening on 127.0.0.1. Its methods that
// return nothing report failures with t.Fatalf and so must be called from
// the goroutine running the test.
type Redis struct {
	t       testing.TB
	bin     string
	port    int
	dir     string
	logPath string
	args    []string

	mu   sync.Mutex
	proc *redisProc // nil when not running
}

// redisProc is one run of the redis-server process.
type redisProc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // result of Wait, valid after done is closed
}

// StartRedis starts a redis-server on a free port of 127.0.0.1 with its
// working directory (AOF, RDB, log) in a fresh temporary directory, waits
// until it answers PING and registers its termination with t.Cleanup.
func StartRedis(t testing.TB, opts RedisOptions) *Redis {
	t.Helper()
	Need(t, "redis-server")
	ports, err := freePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"--save", opts.Save}
	if opts.AppendOnly {
		args = append(args, "--appendonly", "yes", "--appendfsync", "always")
	} else {
		args = append(args, "--appendonly", "no")
	}
	args = append(args, opts.ExtraArgs...)
	r := newRedis(t, ports[0], t.TempDir(), args)
	if err := r.start(); err != nil {
		t.Fatal(err)
	}
	return r
}

// newRedis prepares a Redis without starting it; extra holds the
// mode-specific arguments.
func newRedis(t testing.TB, port int, dir string, extra []string) *Redis {
	r := &Redis{
		t:       t,
		bin:     mustBin(t, "redis-server"),
		port:    port,
		dir:     dir,
		logPath: filepath.Join(dir, "redis.log"),
	}
	r.args = append([]string{
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--dir", dir,
		"--daemonize", "no", // logs go to stdout, i.e. to logPath
		"--loglevel", "notice",
	}, extra...)
	t.Cleanup(func() { r.halt(syscall.SIGKILL, 0) })
	return r
}

// Addr returns the server's "127.0.0.1:port" address. It stays the same
// across Stop/Kill and Start.
func (r *Redis) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(r.port)) }

// Dir returns the server's working directory (AOF and RDB files).
func (r *Redis) Dir() string { return r.dir }

// Log returns the last lines of the server's log, covering all runs.
func (r *Redis) Log() string { return readTail(r.logPath, 60) }

// Running reports whether the server process is currently alive.
func (r *Redis) Running() bool {
	r.mu.Lock()
	p := r.proc
	r.mu.Unlock()
	if p == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Start starts the server again, on the same port and directory, after Stop
// or Kill, and waits until it answers PING (that is, until any append-only
// file has been loaded).
func (r *Redis) Start() {
	r.t.Helper()
	if err := r.start(); err != nil {
		r.t.Fatal(err)
	}
}

// Stop shuts the server down cleanly (SIGTERM, which also flushes the
// append-only file) and waits for it to exit, falling back to SIGKILL after
// 10 s. It does nothing if the server is not running.
func (r *Redis) Stop() {
	r.t.Helper()
	if err := r.halt(syscall.SIGTERM, redisStopTimeout); err != nil {
		r.t.Fatal(err)
	}
}

// Kill terminates the server with SIGKILL, as a crash would, and waits for
// the process to be gone. It does nothing if the server is not running.
func (r *Redis) Kill() {
	r.t.Helper()
	if err := r.halt(syscall.SIGKILL, 0); err != nil {
		r.t.Fatal(err)
	}
}

// Client returns a new go-redis client for the server, closed by t.Cleanup.
// The client reconnects by itself after Kill and Start.
func (r *Redis) Client() *redis.Client {
	c := redis.NewClient(&redis.Options{
		Addr:                     r.Addr(),
		DisableIdentity:          true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
	r.t.Cleanup(func() { c.Close() })
	return c
}

func (r *Redis) start() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.proc != nil {
		select {
		case <-r.proc.done:
		default:
			return fmt.Errorf("testenv: redis-server on %s is already running", r.Addr())
		}
	}
	logf, err := os.OpenFile(r.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("testenv: redis log: %w", err)
	}
	fmt.Fprintf(logf, "### testenv: starting %s %s\n", r.bin, strings.Join(r.args, " "))
	cmd := exec.Command(r.bin, r.args...)
	cmd.Dir = r.dir
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("testenv: starting redis-server: %w", err)
	}
	p := &redisProc{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	r.proc = p

	deadline := time.Now().Add(redisStartTimeout)
	for {
		reply, err := redisPing(r.Addr())
		if err == nil && reply == "+PONG" {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("testenv: redis-server on %s exited during start-up (%v); log:\n%s", r.Addr(), p.err, r.Log())
		default:
		}
		if time.Now().After(deadline) {
			last := reply
			if err != nil {
				last = err.Error()
			}
			return fmt.Errorf("testenv: redis-server on %s did not answer PING within %v (last: %s); log:\n%s", r.Addr(), redisStartTimeout, last, r.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// halt sends sig and waits for the process to exit; after grace (if not
// zero) it sends SIGKILL.
func (r *Redis) halt(sig syscall.Signal, grace time.Duration) error {
	r.mu.Lock()
	p := r.proc
	r.mu.Unlock()
	if p == nil {
		return nil
	}
	select {
	case <-p.done:
		return nil
	default:
	}
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("testenv: signalling redis-server: %w", err)
	}
	if grace > 0 {
		select {
		case <-p.done:
			return nil
		case <-time.After(grace):
			p.cmd.Process.Kill()
		}
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("testenv: redis-server on %s (pid %d) did not exit; log:\n%s", r.Addr(), p.cmd.Process.Pid, r.Log())
	}
}

// redisPing sends one PING over a fresh connection and returns the first
// reply line (e.g. "+PONG", or "-LOADING ..." while the dataset loads).
func redisPing(addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimRight(line, "\r\n"), err
}
