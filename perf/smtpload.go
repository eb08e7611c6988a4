// Package perf measures aupguard against a do-nothing milter, as ratios in
// one run on the same machine: Postfix throughput with each milter, the
// milter-protocol load tool's throughput, end-of-message latency at half of
// peak load, and the gateway's memory with many large concurrent messages.
// It is a load tool run with `AUPG_PERF=1 go test -run '^$' -bench BenchmarkPerf -benchtime 1x ./perf/`
// (see docs/performance.md); it targets loopback only and every loop is
// bounded in count and time. Nothing in it asserts a timing.
package perf

import (
	"bytes"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
)

// SMTPLoad sends messages through an SMTP server over sessions concurrent
// connections, several messages per connection, and returns how many were
// accepted (250 at end of data).
type SMTPLoad struct {
	Addr      string
	LocalAddr string
	Sessions  int
	Messages  int
	Size      int
	From      string
	To        string
}

// Run sends the messages and returns the count accepted and the first error.
func (l SMTPLoad) Run() (accepted int, firstErr error) {
	body := messageBody(l.From, l.To, l.Size)
	var next, ok atomic.Int64
	var errOnce sync.Once
	var wg sync.WaitGroup
	for i := 0; i < l.Sessions; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := net.Dialer{Timeout: 10 * time.Second}
			if l.LocalAddr != "" {
				d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(l.LocalAddr)}
			}
			conn, err := d.Dial("tcp", l.Addr)
			if err != nil {
				errOnce.Do(func() { firstErr = err })
				return
			}
			c := smtp.NewClient(conn)
			defer c.Close()
			if err := c.Hello("load.test"); err != nil {
				errOnce.Do(func() { firstErr = err })
				return
			}
			for next.Add(1) <= int64(l.Messages) {
				if err := c.SendMail(l.From, []string{l.To}, bytes.NewReader(body)); err != nil {
					errOnce.Do(func() { firstErr = err })
					_ = c.Reset()
					continue
				}
				ok.Add(1)
			}
			_ = c.Quit()
		}()
	}
	wg.Wait()
	return int(ok.Load()), firstErr
}

func messageBody(from, to string, size int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: Load <%s>\r\nTo: <%s>\r\nSubject: load\r\nDate: %s\r\nMessage-ID: <%d@load.test>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\n",
		from, to, time.Now().Format(time.RFC1123Z), time.Now().UnixNano())
	line := "0123456789 the quick brown fox jumps over the lazy dog 0123456789 abcdefgh\r\n"
	for b.Len() < size {
		b.WriteString(line)
	}
	return b.Bytes()
}
