package links_test

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"net/textproto"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/aupguard/aupguard/internal/checks/content/links"
)

// hostNames lists the hosts' names in order.
func hostNames(l links.Links) []string {
	out := make([]string, 0, len(l.Hosts))
	for _, h := range l.Hosts {
		out = append(out, h.Name)
	}
	return out
}

// crlf turns a test message's LF line ends into CRLF.
func crlf(s string) string { return strings.ReplaceAll(s, "\n", "\r\n") }

// feed streams msg through an Extractor as a milter would: header fields
// one by one, then the body in chunks of size bytes.
func feed(t testing.TB, msg string, size int, o links.Options) links.Links {
	t.Helper()
	hdr, body, ok := strings.Cut(msg, "\r\n\r\n")
	if !ok {
		t.Fatalf("message without a blank line")
	}
	e := links.NewExtractor(o)
	r := textproto.NewReader(bufio.NewReader(strings.NewReader(hdr + "\r\n\r\n")))
	for {
		line, err := r.ReadContinuedLine()
		if err != nil || line == "" {
			break
		}
		k, v, _ := strings.Cut(line, ":")
		e.Header(k, strings.TrimSpace(v))
	}
	for len(body) > 0 {
		n := min(size, len(body))
		if w, err := e.Write([]byte(body[:n])); w != n || err != nil {
			t.Fatalf("Write = %d, %v", w, err)
		}
		body = body[n:]
	}
	return e.Links()
}

func TestExtract(t *testing.T) {
	html := `<html><body><p>Dear customer, <a href="https://login.phish.example/verify?id=1">verify</a>
<img src="http://cdn.images.example.net/logo.png"> <form action="https://collect.example.org/post"></form>
Also see https://bare-in-html.example.com/page and <a href="mailto:x@y.example">mail</a>
<a href="javascript:alert(1)">j</a><script>var u="https://in-script.example/";</script>
</body></html>`
	b64 := func(s string) string {
		var b bytes.Buffer
		enc := base64.NewEncoder(base64.StdEncoding, &b)
		enc.Write([]byte(s))
		enc.Close()
		return b.String()
	}
	tests := []struct {
		name string
		msg  string
		own  []string
		want []string
	}{
		{"plain text bare URL and www host", "Subject: hi\n\nGo to http://Shop.Example.co.uk/a?b=c now, or www.other.example.com.\nmail bob@mail.example (not a link)\n", nil,
			[]string{"example.co.uk", "example.com"}},
		{"message without Content-Type is text/plain", "Subject: x\n\nhttps://a.example/\n", nil, []string{"a.example"}},
		{"HTML href, src, action and text; not mailto, javascript or script", "Content-Type: text/html\n\n" + html, nil,
			[]string{"phish.example", "example.net", "example.org", "example.com"}},
		{"quoted-printable with soft line breaks and =3D", "Content-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n" +
			"<a href=3D\"https://qp.liste=\nd.example/x?a=3Db\">click</a> and http://soft=\n.break.example/\n", nil,
			[]string{"listed.example", "break.example"}},
		{"base64 HTML part in multipart/alternative", "Content-Type: multipart/alternative; boundary=\"B\"\n\n--B\nContent-Type: text/plain\n\nplain http://text.example/\n--B\nContent-Type: text/html\nContent-Transfer-Encoding: base64\n\n" +
			b64(`<a href="https://b64.listed.example/x">x</a>`) + "\n--B--\n", nil,
			[]string{"text.example", "listed.example"}},
		{"ISO-8859-1 text", "Content-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: quoted-printable\n\nVoil=E0 http://www.caf=E9.example/ fin\n", nil,
			[]string{"xn--caf-dma.example"}},
		{"UTF-8 IDN in HTML", "Content-Type: text/html; charset=utf-8\n\n<a href=\"https://pаypal.example/\">cyrillic a</a> <a href=\"http://BÜCHER.example/\">b</a>\n", nil,
			[]string{"xn--pypal-4ve.example", "xn--bcher-kva.example"}},
		{"redirect-wrapped target", "Subject: r\n\nhttps://t.example/?u=https%3A%2F%2Flisted.example%2Fx\n", nil,
			[]string{"t.example", "listed.example"}},
		{"redirect wrapped twice and in the path", "Subject: r\n\nhttps://r1.example/go?url=https%3A%2F%2Fr2.example%2F%3Ftarget%3Dhttps%253A%252F%252Fdeep.example%252F and http://p.example/r/https://inpath.example/z\n", nil,
			[]string{"r1.example", "r2.example", "deep.example", "p.example", "inpath.example"}},
		{"IP literals, browser forms, private skipped", "Subject: ip\n\nhttp://192.0.2.1/a http://[2001:db8::1]/b http://3221225473/ http://0xC0.0x00.0x02.0x01/ http://10.0.0.1/ http://127.0.0.1/ http://1.2.3.256/\n", nil,
			[]string{"192.0.2.1", "2001:db8::1", "192.0.0.1"}}, // the hex form is 192.0.2.1 again
		{"customer's own domains skipped", "Subject: own\n\nhttps://www.customer.example/unsub https://customer.example/ https://mail.customer.example/ https://other.example/\n", []string{"Customer.Example."},
			[]string{"other.example"}},
		{"own domain does not hide a redirect target", "Subject: own\n\nhttps://click.customer.example/?u=https%3A%2F%2Fbad.example%2F\n", []string{"customer.example"},
			[]string{"bad.example"}},
		{"message/rfc822 attachment entered", "Content-Type: multipart/mixed; boundary=X\n\n--X\nContent-Type: text/plain\n\nsee attached\n--X\nContent-Type: message/rfc822\n\nSubject: inner\nContent-Type: text/html\n\n<a href=\"http://inner.example/\">x</a>\n--X--\n", nil,
			[]string{"inner.example"}},
		{"attachments are not read", "Content-Type: multipart/mixed; boundary=X\n\n--X\nContent-Type: application/octet-stream\n\nhttp://binary.example/\n--X--\n", nil,
			nil},
		{"public suffix alone and single labels skipped", "Subject: s\n\nhttp://co.uk/ http://localhost/ http://github.io/ http://user.github.io/\n", nil,
			[]string{"user.github.io"}},
		{"duplicates kept once, first URL noted", "Subject: d\n\nhttp://a.dup.example/1 http://b.dup.example/2\n", nil, []string{"dup.example"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, size := range []int{1, 7, 64 << 10} {
				got := feed(t, crlf(tc.msg), size, links.Options{Own: tc.own})
				if got.Err != nil {
					t.Errorf("chunk %d: Err %v", size, got.Err)
				}
				if fmt.Sprint(hostNames(got)) != fmt.Sprint(tc.want) && !(len(got.Hosts) == 0 && len(tc.want) == 0) {
					t.Errorf("chunk %d: hosts %q, want %q", size, hostNames(got), tc.want)
				}
			}
		})
	}
}

func TestExtractKeepsFirstURLOfHost(t *testing.T) {
	got := links.Extract(strings.NewReader(crlf("Subject: d\n\nhttp://a.dup.example/1 http://b.dup.example/2\n")), links.Options{})
	if len(got.Hosts) != 1 || got.Hosts[0].URL != "http://a.dup.example/1" {
		t.Fatalf("hosts %+v", got.Hosts)
	}
}

func TestExtractOwnCounted(t *testing.T) {
	got := links.Extract(strings.NewReader(crlf("Subject: d\n\nhttp://own.example/ http://x.own.example/\n")), links.Options{Own: []string{"own.example"}})
	if len(got.Hosts) != 0 || got.Own != 2 || got.URLs != 2 {
		t.Fatalf("got %+v", got)
	}
}

func TestExtractBounds(t *testing.T) {
	t.Run("at most MaxHosts unique hosts kept, the rest counted", func(t *testing.T) {
		var b strings.Builder
		b.WriteString("Subject: many\r\n\r\n")
		for i := range 500 {
			fmt.Fprintf(&b, "https://host%d.example/\r\n", i)
		}
		got := links.Extract(strings.NewReader(b.String()), links.Options{MaxHosts: 50})
		if len(got.Hosts) != 50 || got.Dropped != 450 || got.Hosts[0].Name != "host0.example" || got.Hosts[49].Name != "host49.example" {
			t.Fatalf("hosts %d dropped %d first %v", len(got.Hosts), got.Dropped, hostNames(got)[:1])
		}
	})
	t.Run("text past MaxTextBytes is not examined", func(t *testing.T) {
		msg := "Subject: long\r\n\r\nhttp://early.example/ " + strings.Repeat("filler ", 2000) + "http://late.example/\r\n"
		got := links.Extract(strings.NewReader(msg), links.Options{MaxTextBytes: 4096})
		if fmt.Sprint(hostNames(got)) != "[early.example]" || !got.Truncated {
			t.Fatalf("got %v truncated %v", hostNames(got), got.Truncated)
		}
	})
	t.Run("raw bytes past MaxRawBytes are not parsed and writes stay cheap", func(t *testing.T) {
		e := links.NewExtractor(links.Options{MaxRawBytes: 1000})
		e.Header("Content-Type", "text/plain")
		e.Write([]byte("http://first.example/ " + strings.Repeat("x", 2000) + "\r\n"))
		for range 1000 {
			e.Write(bytes.Repeat([]byte("http://more.example/ "), 100))
		}
		got := e.Links()
		if fmt.Sprint(hostNames(got)) != "[first.example]" || !got.Truncated || got.Err != nil {
			t.Fatalf("got %v truncated %v err %v", hostNames(got), got.Truncated, got.Err)
		}
	})
	t.Run("a URL split across body chunks is found whole", func(t *testing.T) {
		msg := "Subject: s\r\n\r\n" + strings.Repeat("word ", 10000) + "https://split.example/path\r\n"
		for _, size := range []int{3, 4096, 32 << 10} {
			if got := feed(t, msg, size, links.Options{}); fmt.Sprint(hostNames(got)) != "[split.example]" {
				t.Fatalf("chunk %d: %v", size, hostNames(got))
			}
		}
	})
	t.Run("a malformed message keeps what was found before the fault", func(t *testing.T) {
		msg := "Content-Type: multipart/mixed; boundary=X\r\n\r\n--X\r\nContent-Type: text/plain\r\n\r\nhttp://before.example/\r\n--X\r\nBad header line without colon\r\n\r\nx\r\n"
		got := links.Extract(strings.NewReader(msg), links.Options{})
		if fmt.Sprint(hostNames(got)) != "[before.example]" {
			t.Fatalf("got %v err %v", hostNames(got), got.Err)
		}
	})
	t.Run("Close with no body", func(t *testing.T) {
		e := links.NewExtractor(links.Options{})
		e.Header("Subject", "x")
		if got := e.Links(); len(got.Hosts) != 0 {
			t.Fatalf("got %+v", got)
		}
	})
}

func TestReduce(t *testing.T) {
	tests := []struct {
		host, want string
		ok         bool
	}{
		{"WWW.Example.COM.", "example.com", true},
		{"a.b.example.co.uk", "example.co.uk", true},
		{"bücher.de", "xn--bcher-kva.de", true},
		{"xn--bcher-kva.de", "xn--bcher-kva.de", true},
		{"3221225473", "192.0.0.1", true},
		{"0300.0250.0.1", "192.168.0.1", false}, // private
		{"0x5db8d822", "93.184.216.34", true},
		{"93.184.216.34", "93.184.216.34", true},
		{"93.184.55590", "93.184.217.38", true},
		{"2001:db8::1", "2001:db8::1", true},
		{"::ffff:93.184.216.34", "93.184.216.34", true},
		{"1.2.3.4.5", "", false},
		{"999.1.1.1", "", false},
		{"foo.123", "", false},
		{"com", "", false},
		{"localhost", "", false},
		{"exa mple.com", "", false},
		{"", "", false},
		{strings.Repeat("a", 64) + ".com", "", false},
		// Invalid UTF-8 becomes U+FFFD, which IDNA encodes but refuses to
		// decode (found by FuzzExtract).
		{"0.\xbd0", "", false},
		{"0.\ufffd0", "", false},
		{"0.xn--0-p10i", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.host, func(t *testing.T) {
			got, _, ok := links.Reduce(tc.host)
			if ok != tc.ok || ok && got != tc.want {
				t.Fatalf("Reduce(%q) = %q, %v; want %q, %v", tc.host, got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestExtractorLifecycle(t *testing.T) {
	t.Run("is an io.WriteCloser; Close twice is harmless; Write after Close is dropped", func(t *testing.T) {
		var w io.WriteCloser = links.NewExtractor(links.Options{})
		e := w.(*links.Extractor)
		e.Header("Content-Type", "text/plain")
		e.Write([]byte("http://one.example/\r\n"))
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if n, err := e.Write([]byte("http://two.example/\r\n")); n != 21 || err != nil {
			t.Fatalf("Write after Close = %d, %v", n, err)
		}
		if got := e.Links(); fmt.Sprint(hostNames(got)) != "[one.example]" {
			t.Fatalf("hosts %v", hostNames(got))
		}
	})
	t.Run("an abandoned Extractor's parse goroutine ends", func(t *testing.T) {
		before := runtime.NumGoroutine()
		for range 50 {
			e := links.NewExtractor(links.Options{})
			e.Header("Content-Type", "text/html")
			e.Write([]byte("<a href=\"http://x.example/\">")) // mid-message: the parser waits for more
		}
		deadline := time.Now().Add(10 * time.Second)
		for runtime.NumGoroutine() > before+5 {
			if time.Now().After(deadline) {
				t.Fatalf("%d goroutines, %d before: abandoned extractors keep their parsers", runtime.NumGoroutine(), before)
			}
			runtime.GC()
			runtime.Gosched()
		}
	})
}

func TestExtractorFoldedHeaderField(t *testing.T) {
	// The milter passes header values as received: folded, CRLF and all.
	e := links.NewExtractor(links.Options{})
	e.Header("Subject", "a\r\n long subject")
	e.Header("Content-Type", "multipart/alternative;\r\n\tboundary=\"B\"")
	// The URL is whole only after quoted-printable decoding of the part.
	e.Write([]byte("--B\r\nContent-Type: text/html\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n<a href=3D\"http://fol=\r\nded.example/\">x</a>\r\n--B--\r\n"))
	if got := e.Links(); fmt.Sprint(hostNames(got)) != "[folded.example]" || got.Err != nil {
		t.Fatalf("hosts %v err %v", hostNames(got), got.Err)
	}
}
