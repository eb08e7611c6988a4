// Package connguard keeps the gateway's listeners serving whatever their
// clients do: Retry makes a listener's Accept ride out errors (running out
// of descriptors above all) with back-off instead of ending the server,
// Limit caps the connections a listener holds overall and per client
// address, and the descriptor budget (RaiseNoFile, Budget) raises the
// process's limit and shares it so that a flood of one listener cannot
// take the descriptors the milter needs.
package connguard

import (
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Back-off bounds of Retry, as net/http's Server.Serve uses them.
const (
	minRetryDelay = 5 * time.Millisecond
	maxRetryDelay = time.Second
)

// RetryListener is a listener whose Accept returns an error only once the
// listener is closed: any other error (EMFILE, ENFILE, ECONNABORTED...) is
// retried with a back-off doubling from 5 ms to 1 s. One warning is logged
// when an episode of failures starts and one line when accepting works
// again, whatever the number of failures in between.
type RetryListener struct {
	net.Listener
	name     string
	log      *slog.Logger
	closed   chan struct{}
	once     sync.Once
	failures atomic.Uint64
	episodes atomic.Uint64
	// sleep waits d or until the listener is closed (false); tests replace it.
	sleep func(d time.Duration, closed <-chan struct{}) bool
}

// Retry wraps ln; name ("milter", "unsubscribe", "admin") goes into the
// log lines.
func Retry(ln net.Listener, name string, log *slog.Logger) *RetryListener {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &RetryListener{Listener: ln, name: name, log: log, closed: make(chan struct{}), sleep: sleepOrClosed}
}

func sleepOrClosed(d time.Duration, closed <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-closed:
		return false
	}
}

// Accept waits for the next connection, retrying every error but the
// listener's closing.
func (l *RetryListener) Accept() (net.Conn, error) {
	var delay time.Duration
	var n uint64
	var first error
	for {
		c, err := l.Listener.Accept()
		if err == nil {
			if n > 0 {
				l.log.Info("listener accepting again", "listener", l.name, "failures", n, "first_err", first.Error())
			}
			return c, nil
		}
		select {
		case <-l.closed:
			return nil, net.ErrClosed
		default:
		}
		if errors.Is(err, net.ErrClosed) {
			return nil, err
		}
		if n == 0 {
			first = err
			l.episodes.Add(1)
			l.log.Warn("listener accept failing; retrying with back-off", "listener", l.name, "err", err.Error())
		}
		n++
		l.failures.Add(1)
		if delay == 0 {
			delay = minRetryDelay
		} else if delay *= 2; delay > maxRetryDelay {
			delay = maxRetryDelay
		}
		if !l.sleep(delay, l.closed) {
			return nil, net.ErrClosed
		}
	}
}

// Close closes the listener and ends an Accept waiting to retry.
func (l *RetryListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

// Failures is the number of failed accepts retried so far.
func (l *RetryListener) Failures() uint64 { return l.failures.Load() }

// Episodes is the number of episodes of failing accepts so far.
func (l *RetryListener) Episodes() uint64 { return l.episodes.Load() }
