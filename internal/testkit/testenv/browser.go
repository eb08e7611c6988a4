package testenv

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// Browser is a headless Chromium driven through the Chrome DevTools
// Protocol over a pipe (--remote-debugging-pipe: the browser reads
// NUL-terminated JSON commands on its descriptor 3 and writes replies and
// events on 4), so tests can open pages, click and submit as a user does
// and read what the page shows. StartBrowser registers its end with
// t.Cleanup.
type Browser struct {
	t    testing.TB
	cmd  *exec.Cmd
	in   *os.File // commands to the browser
	out  *os.File // its replies and events
	errs bytes.Buffer

	mu      sync.Mutex
	next    int
	pending map[int]chan cdpMessage
	waiters []*eventWaiter
	closed  error
}

type cdpMessage struct {
	ID        int             `json:"id,omitempty"`
	Method    string          `json:"method,omitempty"`
	SessionID string          `json:"sessionId,omitempty"`
	Params    json.RawMessage `json:"params,omitempty"`
	Result    json.RawMessage `json:"result,omitempty"`
	Error     *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error,omitempty"`
}

type eventWaiter struct {
	session, method string
	ch              chan json.RawMessage
}

// browserTimeout bounds one protocol call or one wait for an event.
const browserTimeout = 30 * time.Second

// StartBrowser starts headless Chromium with a fresh profile (skipping the
// test, or failing it under CI=true, when chromium is missing).
func StartBrowser(t testing.TB) *Browser {
	t.Helper()
	Need(t, "chromium")
	bin := mustBin(t, "chromium")
	cmdR, cmdW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	evR, evW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	b := &Browser{t: t, in: cmdW, out: evR, pending: map[int]chan cdpMessage{}}
	b.cmd = exec.Command(bin, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-extensions",
		"--user-data-dir="+t.TempDir(), "--remote-debugging-pipe", "--window-size=1200,1600", "about:blank")
	b.cmd.ExtraFiles = []*os.File{cmdR, evW} // descriptors 3 and 4
	b.cmd.Stderr = &syncWriter{w: &b.errs, mu: &b.mu}
	if err := b.cmd.Start(); err != nil {
		t.Fatalf("chromium: %v", err)
	}
	cmdR.Close()
	evW.Close()
	go b.read()
	t.Cleanup(b.close)
	return b
}

type syncWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.w.Len() < 1<<20 {
		s.w.Write(p)
	}
	return len(p), nil
}

func (b *Browser) close() {
	// Browser.close asks it to end; the process is killed if it does not.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_ = b.call(ctx, "", "Browser.close", nil, nil)
	cancel()
	done := make(chan struct{})
	go func() { b.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		b.cmd.Process.Kill()
		<-done
	}
	b.in.Close()
	b.out.Close()
}

// read dispatches the browser's messages: replies to their callers,
// events to the waiters registered for them.
func (b *Browser) read() {
	r := bufio.NewReaderSize(b.out, 1<<20)
	for {
		line, err := r.ReadBytes(0)
		if err != nil {
			b.mu.Lock()
			b.closed = fmt.Errorf("browser pipe: %w", err)
			for id, ch := range b.pending {
				close(ch)
				delete(b.pending, id)
			}
			b.mu.Unlock()
			return
		}
		var m cdpMessage
		if err := json.Unmarshal(line[:len(line)-1], &m); err != nil {
			continue
		}
		b.mu.Lock()
		if m.ID != 0 {
			if ch, ok := b.pending[m.ID]; ok {
				ch <- m
				delete(b.pending, m.ID)
			}
		} else {
			for _, w := range b.waiters {
				if w.method == m.Method && w.session == m.SessionID {
					select {
					case w.ch <- m.Params:
					default:
					}
				}
			}
		}
		b.mu.Unlock()
	}
}

func (b *Browser) call(ctx context.Context, session, method string, params, result any) error {
	b.mu.Lock()
	if b.closed != nil {
		b.mu.Unlock()
		return b.closed
	}
	b.next++
	id := b.next
	ch := make(chan cdpMessage, 1)
	b.pending[id] = ch
	b.mu.Unlock()
	msg := map[string]any{"id": id, "method": method}
	if params != nil {
		msg["params"] = params
	}
	if session != "" {
		msg["sessionId"] = session
	}
	data, err := json.Marshal(msg)
	if err != nil {
		return err
	}
	if _, err := b.in.Write(append(data, 0)); err != nil {
		return fmt.Errorf("%s: %w", method, err)
	}
	select {
	case m, ok := <-ch:
		if !ok {
			return fmt.Errorf("%s: browser gone", method)
		}
		if m.Error != nil {
			return fmt.Errorf("%s: %s (%d)", method, m.Error.Message, m.Error.Code)
		}
		if result != nil {
			return json.Unmarshal(m.Result, result)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%s: %w", method, ctx.Err())
	}
}

// Call sends a browser-level protocol command and decodes its result.
func (b *Browser) Call(method string, params, result any) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), browserTimeout)
	defer cancel()
	if err := b.call(ctx, "", method, params, result); err != nil {
		b.t.Fatalf("%v\nchromium stderr:\n%s", err, b.stderr())
	}
}

func (b *Browser) stderr() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.errs.String()
}

// expect registers a waiter for the next event method of session, before
// the command that causes it is sent.
func (b *Browser) expect(session, method string) *eventWaiter {
	w := &eventWaiter{session: session, method: method, ch: make(chan json.RawMessage, 16)}
	b.mu.Lock()
	b.waiters = append(b.waiters, w)
	b.mu.Unlock()
	return w
}

func (b *Browser) forget(w *eventWaiter) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, x := range b.waiters {
		if x == w {
			b.waiters = append(b.waiters[:i], b.waiters[i+1:]...)
			return
		}
	}
}

// Page is one tab of the browser.
type Page struct {
	b       *Browser
	session string
}

// NewPage opens a tab (about:blank) with its page and runtime events on.
func (b *Browser) NewPage() *Page {
	b.t.Helper()
	var tgt struct {
		TargetID string `json:"targetId"`
	}
	b.Call("Target.createTarget", map[string]any{"url": "about:blank"}, &tgt)
	var att struct {
		SessionID string `json:"sessionId"`
	}
	b.Call("Target.attachToTarget", map[string]any{"targetId": tgt.TargetID, "flatten": true}, &att)
	p := &Page{b: b, session: att.SessionID}
	p.Call("Page.enable", nil, nil)
	p.Call("Runtime.enable", nil, nil)
	return p
}

// Call sends a protocol command to the page.
func (p *Page) Call(method string, params, result any) {
	p.b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), browserTimeout)
	defer cancel()
	if err := p.b.call(ctx, p.session, method, params, result); err != nil {
		p.b.t.Fatalf("%v\nchromium stderr:\n%s", err, p.b.stderr())
	}
}

// Navigate loads url and waits for its load event.
func (p *Page) Navigate(url string) {
	p.b.t.Helper()
	p.AndWaitLoad(func() {
		var r struct {
			ErrorText string `json:"errorText"`
		}
		p.Call("Page.navigate", map[string]any{"url": url}, &r)
		if r.ErrorText != "" {
			p.b.t.Fatalf("navigate %s: %s", url, r.ErrorText)
		}
	})
}

// AndWaitLoad runs act (a navigation, a click, a form submission) and
// waits until the page that follows has loaded.
func (p *Page) AndWaitLoad(act func()) {
	p.b.t.Helper()
	w := p.b.expect(p.session, "Page.loadEventFired")
	defer p.b.forget(w)
	act()
	select {
	case <-w.ch:
	case <-time.After(browserTimeout):
		p.b.t.Fatalf("page did not load within %v", browserTimeout)
	}
}

// Eval evaluates a JavaScript expression in the page, awaiting it when it
// is a promise, and decodes its value into out (when not nil).
func (p *Page) Eval(expr string, out any) {
	p.b.t.Helper()
	var r struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		Exception *struct {
			Text      string `json:"text"`
			Exception struct {
				Description string `json:"description"`
			} `json:"exception"`
		} `json:"exceptionDetails"`
	}
	p.Call("Runtime.evaluate", map[string]any{"expression": expr, "awaitPromise": true, "returnByValue": true}, &r)
	if r.Exception != nil {
		p.b.t.Fatalf("evaluating %.200s: %s %s", expr, r.Exception.Text, r.Exception.Exception.Description)
	}
	if out != nil && len(r.Result.Value) > 0 {
		if err := json.Unmarshal(r.Result.Value, out); err != nil {
			p.b.t.Fatalf("evaluating %.200s: %v (%s)", expr, err, r.Result.Value)
		}
	}
}

// Text is the page's visible text (document.body.innerText).
func (p *Page) Text() string {
	p.b.t.Helper()
	var s string
	p.Eval("document.body ? document.body.innerText : ''", &s)
	return s
}

// URL is the page's address.
func (p *Page) URL() string {
	p.b.t.Helper()
	var s string
	p.Eval("location.href", &s)
	return strings.TrimSpace(s)
}
