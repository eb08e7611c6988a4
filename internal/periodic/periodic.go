// Package periodic runs a save in the background at a fixed interval, the
// way the memory store's backends keep what must survive a crash: a
// failing save is logged once when the failures start and once when they
// end, not at every interval.
package periodic

import (
	"log/slog"
	"sync"
	"time"
)

// Messages are the log lines of a loop: Failed when a save starts failing
// (with its error), Recovered when one works again; Attrs go on both.
type Messages struct {
	Failed, Recovered string
	Attrs             []any
}

// Loop is a running save loop.
type Loop struct {
	stop, done chan struct{}
	once       sync.Once
}

// Start runs save every interval until Stop. A nil log discards the lines.
func Start(interval time.Duration, save func() error, log *slog.Logger, msg Messages) *Loop {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	l := &Loop{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		failing := false
		for {
			select {
			case <-l.stop:
				return
			case <-t.C:
			}
			err := save()
			switch {
			case err != nil && !failing:
				log.Error(msg.Failed, append(append([]any(nil), msg.Attrs...), "err", err)...)
				failing = true
			case err == nil && failing:
				log.Info(msg.Recovered, msg.Attrs...)
				failing = false
			}
		}
	}()
	return l
}

// Stop ends the loop and waits for a save in progress; a nil Loop, or a
// second Stop, does nothing.
func (l *Loop) Stop() {
	if l == nil {
		return
	}
	l.once.Do(func() {
		close(l.stop)
		<-l.done
	})
}
