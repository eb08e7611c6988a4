package links_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/aupguard/aupguard/internal/checks/content/links"
)

// newsletter is a typical HTML newsletter of about 50 KB: quoted-printable
// HTML with tables, inline styles, tracking links and images, beside a
// plain-text alternative.
func newsletter() string {
	var h, p strings.Builder
	h.WriteString(`<!DOCTYPE html><html><head><meta charset="utf-8"><style>td{font-family:Arial;color:#333}</style></head><body><table width="600">`)
	for i := 0; h.Len() < 36000; i++ {
		fmt.Fprintf(&h, `<tr><td style="padding:10px 20px;font-size:14px;line-height:20px"><a href="https://click.news.example.com/ls/click?upn=%08x-%d&amp;u=https%%3A%%2F%%2Fshop%d.example%%2Fitem%%3Fid%%3D%d"><img src="https://img.cdn.example.net/i/%d.png" width="560" alt="Product %d"></a><p>Our spring collection is here, item %d: see www.shop%d.example for more, or read https://blog.example.org/post/%d today.</p></td></tr>`+"\n", i*7919, i, i%8, i, i, i, i, i%8, i)
		fmt.Fprintf(&p, "Item %d: https://click.news.example.com/ls/click?upn=%08x-%d\n", i, i*7919, i)
	}
	h.WriteString(`</table><p><a href="https://news.example.com/unsubscribe?u=1">Unsubscribe</a></p></body></html>`)
	return crlf("From: news@news.example.com\nTo: a@b.example\nSubject: Spring\nMIME-Version: 1.0\nContent-Type: multipart/alternative; boundary=\"==B==\"\n\n--==B==\nContent-Type: text/plain; charset=utf-8\n\n" +
		p.String() + "\n--==B==\nContent-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n" + qp(h.String()) + "\n--==B==--\n")
}

// qp encodes s as quoted-printable with soft line breaks at 76.
func qp(s string) string {
	var b strings.Builder
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		var t string
		switch {
		case c == '\n':
			b.WriteString("\n")
			n = 0
			continue
		case c == '=' || c > 126:
			t = fmt.Sprintf("=%02X", c)
		default:
			t = string(c)
		}
		if n+len(t) > 75 {
			b.WriteString("=\n")
			n = 0
		}
		b.WriteString(t)
		n += len(t)
	}
	return b.String()
}

func BenchmarkExtractNewsletter(b *testing.B) {
	msg := newsletter()
	hdr, body, _ := strings.Cut(msg, "\r\n\r\n")
	chunk := []byte(body)
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		e := links.NewExtractor(links.Options{Own: []string{"news.example.com"}})
		for _, l := range strings.Split(hdr, "\r\n") {
			k, v, _ := strings.Cut(l, ":")
			e.Header(k, strings.TrimSpace(v))
		}
		for c := chunk; len(c) > 0; {
			n := min(len(c), 64<<10)
			e.Write(c[:n])
			c = c[n:]
		}
		if got := e.Links(); len(got.Hosts) == 0 {
			b.Fatal("no hosts")
		}
	}
}

func TestNewsletter(t *testing.T) {
	msg := newsletter()
	if len(msg) < 45000 || len(msg) > 60000 {
		t.Fatalf("newsletter is %d bytes", len(msg))
	}
	got := feed(t, msg, 64<<10, links.Options{Own: []string{"news.example.com"}})
	if fmt.Sprint(hostNames(got)) != "[shop0.example example.net example.org shop1.example shop2.example shop3.example shop4.example shop5.example shop6.example shop7.example]" {
		t.Fatalf("hosts %v (own %d)", hostNames(got), got.Own)
	}
}
