package links_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/aupguard/aupguard/internal/checks/content/links"
)

// FuzzExtract feeds arbitrary messages, in arbitrary chunks, to the
// Extractor: it never panics, keeps at most MaxHosts hosts, every host is
// already reduced (Reduce gives it back unchanged) and none is the
// customer's own, and the result does not depend on how the message was
// cut into chunks.
//
// fuzz count: 30000x
func FuzzExtract(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.msg")
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b, uint8(7))
		}
	}
	f.Add([]byte("Content-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/html\r\n\r\n<a href='//x.example/?q=www.y.example'>\r\n--b--\r\n--a--\r\n"), uint8(1))
	f.Add([]byte("Subject: x\r\n\r\nhttp://[::1]/ http://0x7f.1/ http://4294967296/ https://a.b.c.d.example.co.uk./ www.-.example http://%41.example/\r\n"), uint8(3))
	f.Add([]byte("Content-Type: text/plain; charset=utf-16\r\nContent-Transfer-Encoding: base64\r\n\r\n//4AaAB0AHQAcAA6AC8ALwB4AC4AZQB4AGEAbQBwAGwAZQA=\r\n"), uint8(5))
	f.Add([]byte(""), uint8(0))
	opts := links.Options{MaxHosts: 5, MaxTextBytes: 64 << 10, MaxRawBytes: 256 << 10, Own: []string{"own.example"}}
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		a := links.Extract(bytes.NewReader(data), opts)
		e := links.NewRawExtractor(opts)
		size := 1 + int(chunk)%64
		for d := data; len(d) > 0; {
			n := min(size, len(d))
			e.Write(d[:n])
			d = d[n:]
		}
		b := e.Links()
		if len(a.Hosts) > opts.MaxHosts {
			t.Fatalf("%d hosts kept, bound %d", len(a.Hosts), opts.MaxHosts)
		}
		for _, h := range a.Hosts {
			name, ip, ok := links.Reduce(h.Name)
			if !ok || name != h.Name || ip != h.IP {
				t.Fatalf("host %+v is not reduced: Reduce gives %q, %v, %v", h, name, ip, ok)
			}
			if name == "own.example" {
				t.Fatalf("own domain kept: %+v", h)
			}
		}
		if len(data) < 4000 && fmt.Sprint(a.Hosts) != fmt.Sprint(b.Hosts) {
			t.Fatalf("whole: %v\nchunks of %d: %v", a.Hosts, size, b.Hosts)
		}
	})
}
