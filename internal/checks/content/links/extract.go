package links

import (
	"bytes"
	"errors"
	"io"
	"net/url"
	"runtime"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/emersion/go-message"
	_ "github.com/emersion/go-message/charset" // charsets beyond UTF-8 and US-ASCII
	"golang.org/x/net/html"
)

// Defaults of Options.
const (
	DefaultMaxTextBytes = 1 << 20
	DefaultMaxHosts     = 50
	DefaultMaxRawBytes  = 16 << 20
)

const (
	maxDepth        = 8         // nesting of multipart and message/rfc822 parts
	maxHeaderBytes  = 256 << 10 // the top-level header block
	maxRedirects    = 2         // redirect wrappers followed inside one URL
	maxURLBytes     = 4096      // longer URLs are not looked at
	maxCarry        = 4096      // unfinished text kept between text chunks
	urlNoteBytes    = 200       // Host.URL is cut to this
	textReadBufSize = 32 << 10
)

// Options bound and shape an extraction.
type Options struct {
	// MaxTextBytes is how many bytes of decoded text (text/plain and
	// text/html parts, after transfer encoding and charset) are examined
	// per message; the rest is not read. 0 means DefaultMaxTextBytes.
	MaxTextBytes int64
	// MaxHosts is how many unique hosts are kept; later ones are counted
	// in Links.Dropped. 0 means DefaultMaxHosts.
	MaxHosts int
	// MaxRawBytes is how many bytes of the raw message (header and body as
	// fed) are parsed at most: it bounds what the MIME parser may hold (a
	// part's header block is read whole). 0 means DefaultMaxRawBytes.
	MaxRawBytes int64
	// Own are the customer's own domains: hosts equal to or below one of
	// them, or whose registrable domain is one, are skipped.
	Own []string
}

func (o Options) withDefaults() Options {
	if o.MaxTextBytes <= 0 {
		o.MaxTextBytes = DefaultMaxTextBytes
	}
	if o.MaxHosts <= 0 {
		o.MaxHosts = DefaultMaxHosts
	}
	if o.MaxRawBytes <= 0 {
		o.MaxRawBytes = DefaultMaxRawBytes
	}
	return o
}

// Links is what an extraction found.
type Links struct {
	// Hosts are the unique hosts, in the order the message first names
	// them.
	Hosts []Host
	// URLs counts the http, https and ftp URLs seen (redirect targets
	// included), duplicates included.
	URLs int
	// Own counts hosts (as written) skipped as the customer's own.
	Own int
	// Dropped counts hosts (as written, not reduced) seen after
	// Options.MaxHosts were kept; they are not looked at further.
	Dropped int
	// Truncated is set when a bound (text or raw bytes) stopped the
	// extraction before the end of the message.
	Truncated bool
	// Err is the MIME parse error that ended the extraction early, if any
	// (what was found before it is kept). It is for the log; a malformed
	// message is not an error of the check.
	Err error
}

var errStop = errors.New("links: extraction finished")

// Extractor finds the links of one message as it streams by: header fields
// with Header, then body chunks with Write, then Close, then Links.
// Nothing is buffered whole: the message flows through a pipe into a
// streaming MIME parser (github.com/emersion/go-message) running in its
// own goroutine, which decodes transfer encodings and charsets and reads
// text parts with the URL scanner and HTML parts with the
// golang.org/x/net/html tokenizer. An Extractor is for one message and
// one goroutine at a time. It is an io.WriteCloser, as a policy
// BodyChecker's writer is. An Extractor dropped without Close (an aborted
// transaction) ends its parse goroutine when it is garbage collected.
type Extractor struct {
	st   *state
	hdr  bytes.Buffer
	pw   *io.PipeWriter
	done chan struct{}
	fed  int64
	stop bool
	// whole is set when the message is written whole, header included
	// (Extract), rather than as header fields and body.
	whole  bool
	closed bool
}

// state is what the parse goroutine works on; it holds no reference to
// the Extractor, so that an abandoned Extractor can be collected.
type state struct {
	opt  Options
	own  []string
	res  Links
	seen map[string]struct{}
	raw  map[string]struct{} // hosts as written, already handled
}

// NewExtractor returns an Extractor bounded by o.
func NewExtractor(o Options) *Extractor {
	o = o.withDefaults()
	st := &state{opt: o, seen: map[string]struct{}{}, raw: map[string]struct{}{}}
	for _, d := range o.Own {
		if n := normalizeDomain(d); n != "" {
			st.own = append(st.own, n)
		}
	}
	return &Extractor{st: st}
}

// Header adds one header field of the message (value as received, folded
// or not), before the first Write. Fields past the header bound (256 KiB)
// are ignored.
func (e *Extractor) Header(name, value string) {
	if e.pw != nil || e.hdr.Len()+len(name)+len(value) > maxHeaderBytes {
		return
	}
	e.hdr.WriteString(name)
	e.hdr.WriteString(": ")
	e.hdr.WriteString(value)
	e.hdr.WriteString("\r\n")
}

// Write feeds the next chunk of the body (CRLF line ends). It never
// fails: once the extraction has ended (a bound reached, a parse error,
// Close) further chunks are dropped at no cost.
func (e *Extractor) Write(p []byte) (int, error) {
	n := len(p)
	e.start()
	if e.stop {
		return n, nil
	}
	if rest := e.st.opt.MaxRawBytes - e.fed; int64(len(p)) > rest {
		p = p[:rest]
	}
	e.fed += int64(len(p))
	if _, err := e.pw.Write(p); err != nil {
		e.stop = true
	}
	if e.fed >= e.st.opt.MaxRawBytes {
		e.stop = true
		e.pw.Close()
	}
	return n, nil
}

// Close ends the message and waits for the parser, which at this point has
// only what was fed left to read. It always returns nil; calling it again
// does nothing.
func (e *Extractor) Close() error {
	if e.closed {
		return nil
	}
	e.closed = true
	e.stop = true
	e.start()
	e.pw.Close()
	<-e.done
	res := &e.st.res
	if e.fed >= e.st.opt.MaxRawBytes {
		// The parser saw the stream end early: what it says about that
		// end is no fault of the message.
		res.Truncated = true
		res.Err = nil
	}
	if errors.Is(res.Err, errStop) || errors.Is(res.Err, io.EOF) {
		res.Err = nil
	}
	return nil
}

// Links closes the Extractor (if not yet) and returns what was found.
func (e *Extractor) Links() Links {
	e.Close()
	return e.st.res
}

// start begins the parse on the first body chunk (or at Close).
func (e *Extractor) start() {
	if e.pw != nil {
		return
	}
	pr, pw := io.Pipe()
	e.pw = pw
	done := make(chan struct{})
	e.done = done
	var r io.Reader = pr
	if !e.whole {
		r = io.MultiReader(bytes.NewReader(e.hdr.Bytes()), strings.NewReader("\r\n"), pr)
	}
	st := e.st
	go func() {
		defer close(done)
		p := parser{st: st, budget: st.opt.MaxTextBytes}
		err := p.message(r)
		if err != nil && st.res.Err == nil {
			st.res.Err = err
		}
		// Stop the feeder at no cost: further writes fail at once.
		pr.CloseWithError(errStop)
	}()
	// An abandoned Extractor: end the parse, so that its goroutine and
	// what it holds go too.
	runtime.AddCleanup(e, func(pw *io.PipeWriter) { pw.CloseWithError(errAbandoned) }, pw)
}

var errAbandoned = errors.New("links: extractor abandoned")

// Extract reads a whole message from r (tests, the explain command) with
// the same bounds as the streaming Extractor.
func Extract(r io.Reader, o Options) Links {
	e := NewExtractor(o)
	e.whole = true
	e.start()
	buf := make([]byte, 32<<10)
	for !e.stop {
		n, err := r.Read(buf)
		if n > 0 {
			e.Write(buf[:n])
		}
		if err != nil {
			break
		}
	}
	return e.Links()
}

// parser walks the MIME tree in the parse goroutine.
type parser struct {
	st     *state
	budget int64 // text bytes left
	buf    []byte
}

func (p *parser) message(r io.Reader) error {
	m, err := message.ReadWithOptions(r, &message.ReadOptions{MaxHeaderBytes: maxHeaderBytes + 2})
	if m == nil {
		return err
	}
	return p.entity(m, 0)
}

func (p *parser) entity(m *message.Entity, depth int) error {
	if depth > maxDepth {
		return nil
	}
	if mr := m.MultipartReader(); mr != nil {
		for {
			part, err := mr.NextPart()
			if part == nil {
				if err == io.EOF {
					return nil
				}
				return err
			}
			if err := p.entity(part, depth+1); err != nil {
				return err
			}
		}
	}
	mt, _, _ := m.Header.ContentType()
	switch mt {
	case "", "text/plain":
		return p.text(m.Body)
	case "text/html":
		return p.html(m.Body)
	case "message/rfc822", "message/global":
		sub, err := message.ReadWithOptions(m.Body, &message.ReadOptions{MaxHeaderBytes: maxHeaderBytes})
		if sub == nil {
			return err
		}
		return p.entity(sub, depth+1)
	}
	return nil
}

// limit returns r cut to the text budget left.
func (p *parser) limit(r io.Reader) *budgetReader {
	return &budgetReader{p: p, r: r}
}

// budgetReader charges what it reads to the message's text budget and
// ends the extraction when the budget is spent.
type budgetReader struct {
	p *parser
	r io.Reader
}

func (b *budgetReader) Read(buf []byte) (int, error) {
	if b.p.budget <= 0 {
		b.p.st.res.Truncated = true
		return 0, errStop
	}
	if int64(len(buf)) > b.p.budget {
		buf = buf[:b.p.budget]
	}
	n, err := b.r.Read(buf)
	b.p.budget -= int64(n)
	return n, err
}

// separator reports whether c may end a URL in running text.
func separator(c byte) bool {
	switch c {
	case ' ', '\t', '\r', '\n', '<', '>', '"':
		return true
	}
	return false
}

// text scans a text/plain body in chunks; the unfinished word at a chunk's
// end is carried into the next (up to maxCarry bytes).
func (p *parser) text(r io.Reader) error {
	br := p.limit(r)
	if cap(p.buf) < textReadBufSize+maxCarry {
		p.buf = make([]byte, 0, textReadBufSize+maxCarry)
	}
	buf := p.buf[:0]
	for {
		n, err := br.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err != nil {
			p.scanText(buf)
			if err == io.EOF {
				return nil
			}
			return err
		}
		cut := len(buf)
		for cut > 0 && !separator(buf[cut-1]) {
			cut--
		}
		if len(buf)-cut > maxCarry || cut == 0 && len(buf) == cap(buf) {
			cut = len(buf)
		}
		p.scanText(buf[:cut])
		buf = buf[:copy(buf, buf[cut:])]
	}
}

// scanText finds bare URLs with a scheme (http, https, ftp) and "www."
// hosts in running text, at each "://" or "www." (see urlAt).
func (p *parser) scanText(b []byte) {
	for i := 0; i < len(b); {
		j := anchor(b[i:])
		if j < 0 {
			return
		}
		pos := i + j
		start, end := urlAt(b, i, pos)
		if start >= 0 {
			p.url(string(b[start:end]), 0)
		}
		i = max(end, pos+1)
	}
}

// urlAt delimits the URL around the anchor at pos ("://" or "www."), not
// reaching before from: the scheme before "://" must be http, https or
// ftp (any case) and start a word; "www." must start a word. The URL runs
// to the first space (ASCII or Unicode), control character or < > " `,
// or maxURLBytes; trailing punctuation that ends a sentence (. , ; : ! ?
// ' *) and closing brackets without their opening one are left out, as a
// reader would. start is -1 when there is no URL at pos; end is where
// scanning may go on.
func urlAt(b []byte, from, pos int) (start, end int) {
	start = pos
	if b[pos] == ':' {
		for start > from && start > pos-6 && isAlpha(b[start-1]) {
			start--
		}
		scheme := string(b[start:pos])
		if !strings.EqualFold(scheme, "http") && !strings.EqualFold(scheme, "https") && !strings.EqualFold(scheme, "ftp") {
			return -1, pos + 3
		}
	}
	if start > from && wordByte(b[start-1]) {
		return -1, pos + 4
	}
	end = pos
	for end < len(b) && end-start < maxURLBytes {
		c := b[end]
		if c < 0x80 {
			if c <= ' ' || c == 0x7f || c == '<' || c == '>' || c == '"' || c == '`' {
				break
			}
			end++
			continue
		}
		r, n := utf8.DecodeRune(b[end:])
		if unicode.IsSpace(r) || r == utf8.RuneError && n <= 1 {
			break
		}
		end += n
	}
	next := end
	// Brackets counted once (not per trailing byte: a URL of a thousand
	// ")" would cost a million steps).
	var opens, closes [3]int
	for _, c := range b[start:end] {
		if k := strings.IndexByte("([{", c); k >= 0 {
			opens[k]++
		} else if k := strings.IndexByte(")]}", c); k >= 0 {
			closes[k]++
		}
	}
	for end > start {
		c := b[end-1]
		if strings.IndexByte(".,;:!?'*", c) >= 0 {
			end--
			continue
		}
		if k := strings.IndexByte(")]}", c); k >= 0 && opens[k] < closes[k] {
			closes[k]--
			end--
			continue
		}
		break
	}
	if end-pos <= 4 { // nothing after the anchor
		return -1, next
	}
	return start, end
}

func isAlpha(c byte) bool { return 'a' <= c|0x20 && c|0x20 <= 'z' }

// wordByte reports whether c continues a word (so that an anchor after
// it does not start a URL: "xhttp://", "foo.www.").
func wordByte(c byte) bool {
	return isAlpha(c) || '0' <= c && c <= '9' || c == '.' || c == '-' || c == '_' || c == '/' || c == '@' || c == '+'
}

// anchor returns the index of the first "://" or "www." (any case) in b,
// or -1.
func anchor(b []byte) int {
	for k := 0; k+3 <= len(b); k++ {
		switch b[k] {
		case ':':
			if b[k+1] == '/' && b[k+2] == '/' {
				return k
			}
		case 'w', 'W':
			if k+4 <= len(b) && b[k+1]|0x20 == 'w' && b[k+2]|0x20 == 'w' && b[k+3] == '.' {
				return k
			}
		}
	}
	return -1
}

func hasScheme(m []byte) bool {
	return hasPrefixFold(m, "http://") || hasPrefixFold(m, "https://") || hasPrefixFold(m, "ftp://")
}

func hasPrefixFold(b []byte, prefix string) bool {
	return len(b) >= len(prefix) && strings.EqualFold(string(b[:len(prefix)]), prefix)
}

// urlAttrs are the HTML attributes whose value is a URL a reader may
// follow or a client may fetch.
var urlAttrs = map[string]bool{
	"href": true, "src": true, "action": true, "formaction": true,
	"background": true, "poster": true, "cite": true, "data": true,
}

// html reads a text/html body with the streaming tokenizer: URL attributes
// and bare URLs in text (outside script and style).
func (p *parser) html(r io.Reader) error {
	z := html.NewTokenizer(p.limit(r))
	z.SetMaxBuf(int(p.budget) + 1)
	skip := 0
	for {
		switch z.Next() {
		case html.ErrorToken:
			if z.Err() == io.EOF {
				return nil
			}
			return z.Err()
		case html.StartTagToken, html.SelfClosingTagToken:
			name, more := z.TagName()
			tag := string(name)
			if tag == "script" || tag == "style" {
				skip++
			}
			var refresh bool
			var content string
			for more {
				var k, v []byte
				k, v, more = z.TagAttr()
				key := string(k)
				switch {
				case urlAttrs[key]:
					p.url(string(v), 0)
				case tag == "meta" && key == "http-equiv":
					refresh = strings.EqualFold(strings.TrimSpace(string(v)), "refresh")
				case tag == "meta" && key == "content":
					content = string(v)
				}
			}
			if refresh {
				if i := strings.Index(strings.ToLower(content), "url="); i >= 0 {
					p.url(strings.Trim(content[i+4:], `'" `), 0)
				}
			}
		case html.EndTagToken:
			name, _ := z.TagName()
			if (string(name) == "script" || string(name) == "style") && skip > 0 {
				skip--
			}
		case html.TextToken:
			if skip == 0 {
				p.scanText(z.Text())
			}
		}
	}
}

// url takes one URL as found (an attribute value, a text match, a
// redirect target) and records its host and the hosts of the URLs it
// wraps.
func (p *parser) url(raw string, depth int) {
	raw = strings.TrimSpace(raw)
	if raw == "" || len(raw) > maxURLBytes {
		return
	}
	if strings.ContainsAny(raw, "\t\r\n") { // browsers drop them (WHATWG URL)
		raw = strings.Map(func(r rune) rune {
			if r == '\t' || r == '\r' || r == '\n' {
				return -1
			}
			return r
		}, raw)
	}
	switch {
	case strings.HasPrefix(raw, "//"):
		raw = "http:" + raw
	case hasPrefixFold([]byte(raw), "www."):
		raw = "http://" + raw
	}
	if !hasScheme([]byte(raw)) {
		return
	}
	raw = strings.Replace(raw, "\\", "/", -1) // browsers read \ as / in http URLs
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return
	}
	p.st.res.URLs++
	p.host(u.Hostname(), raw)
	if depth >= maxRedirects {
		return
	}
	for _, v := range wrapped(u) {
		p.url(v, depth+1)
	}
}

// wrapped returns the URLs a redirector URL carries: query parameter
// values that are URLs after percent-decoding (u=, url=, q=, target=,
// redirect=, whatever the name), and a URL embedded in the path
// (/r/https://...).
func wrapped(u *url.URL) []string {
	var out []string
	for _, kv := range strings.FieldsFunc(u.RawQuery, func(r rune) bool { return r == '&' || r == ';' }) {
		_, v, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		for range 2 { // a value may be encoded twice
			if d, err := url.QueryUnescape(v); err == nil {
				v = d
			}
			if looksLikeURL(v) {
				out = append(out, v)
				break
			}
		}
	}
	path := u.EscapedPath()
	if d, err := url.PathUnescape(path); err == nil {
		path = d
	}
	if i := strings.Index(strings.ToLower(path), "http"); i >= 0 && looksLikeURL(path[i:]) {
		out = append(out, path[i:])
	}
	return out
}

func looksLikeURL(v string) bool {
	b := []byte(strings.TrimSpace(v))
	return hasScheme(b) || hasPrefixFold(b, "www.")
}

// host records one host.
func (p *parser) host(h, raw string) {
	if _, done := p.st.raw[h]; done {
		return // the same host as written before: nothing new
	}
	if len(p.st.res.Hosts) >= p.st.opt.MaxHosts {
		p.st.res.Dropped++ // no work for hosts that cannot be kept
		return
	}
	if len(p.st.raw) < 4*p.st.opt.MaxHosts {
		p.st.raw[h] = struct{}{}
	}
	r, ok := reduce(h)
	if !ok {
		return
	}
	for _, o := range p.st.own {
		if r.full == o || strings.HasSuffix(r.full, "."+o) || r.name == o {
			p.st.res.Own++
			return
		}
	}
	key := r.name
	if r.ip.IsValid() {
		key = r.ip.String()
	}
	if _, dup := p.st.seen[key]; dup {
		return
	}
	p.st.seen[key] = struct{}{}
	if len(raw) > urlNoteBytes {
		raw = raw[:urlNoteBytes]
	}
	p.st.res.Hosts = append(p.st.res.Hosts, Host{Name: key, IP: r.ip, URL: raw})
}
