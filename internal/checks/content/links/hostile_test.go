package links_test

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/aupguard/aupguard/internal/checks/content/links"
)

// TestHostileMessages pins what a message built against the extractor
// costs: each finishes fast, keeps the bounds, and keeps what it found
// before the hostile part.
func TestHostileMessages(t *testing.T) {
	nested := func(depth int) string {
		var b strings.Builder
		b.WriteString("Content-Type: multipart/mixed; boundary=b0\r\n\r\n")
		for i := range depth {
			fmt.Fprintf(&b, "--b%d\r\nContent-Type: text/plain\r\n\r\nhttp://level%d.example/\r\n--b%d\r\nContent-Type: multipart/mixed; boundary=b%d\r\n\r\n", i, i, i, i+1)
		}
		return b.String()
	}
	tests := []struct {
		name string
		msg  string
		opt  links.Options
		// want is the first hosts expected (a prefix of what is found).
		want      []string
		truncated bool
	}{
		{"multipart nested a thousand deep: parts below 8 levels are not entered", nested(1000), links.Options{},
			[]string{"level0.example", "level1.example", "level2.example", "level3.example", "level4.example", "level5.example", "level6.example", "level7.example"}, false},
		{"a part header of 8 MiB stops at the raw bound", "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhttp://before.example/\r\n--b\r\n" +
			strings.Repeat("X-Filler: "+strings.Repeat("a", 70)+"\r\n", 100000) + "\r\nhttp://after.example/\r\n--b--\r\n", links.Options{MaxRawBytes: 1 << 20},
			[]string{"before.example"}, true},
		{"a thousand closing brackets after each of many URLs", "Subject: x\r\n\r\n" + strings.Repeat("http://br.example/"+strings.Repeat(")", 1000)+" ", 1000),
			links.Options{MaxTextBytes: 4 << 20}, []string{"br.example"}, false},
		{"one 2 MiB word with anchors in it", "Subject: x\r\n\r\nhttp://first.example/" + strings.Repeat("http://", 300000), links.Options{MaxTextBytes: 4 << 20},
			[]string{"first.example"}, false},
		{"50,000 distinct hosts cost the bound only", "Subject: x\r\n\r\n" + func() string {
			var b strings.Builder
			for i := range 50000 {
				fmt.Fprintf(&b, "http://h%d.example/ ", i)
			}
			return b.String()
		}(), links.Options{MaxTextBytes: 4 << 20}, []string{"h0.example", "h1.example"}, false},
		{"a redirect chain nested a hundred deep is followed two levels", "Subject: x\r\n\r\n" + func() string {
			u := "https://end.example/"
			for i := range 100 {
				u = fmt.Sprintf("https://r%d.example/?u=%s", i, strings.NewReplacer("%", "%25", "&", "%26", "?", "%3F", "=", "%3D").Replace(u))
			}
			return u
		}(), links.Options{}, []string{"r99.example", "r98.example", "r97.example"}, false},
		{"an HTML comment larger than the text budget", "Content-Type: text/html\r\n\r\n<a href=\"http://pre.example/\">x</a><!--" + strings.Repeat("x", 2<<20) + "--><a href=\"http://post.example/\">",
			links.Options{}, []string{"pre.example"}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var before runtime.MemStats
			runtime.ReadMemStats(&before)
			start := time.Now()
			got := feed(t, tc.msg, 64<<10, tc.opt)
			d := time.Since(start)
			var after runtime.MemStats
			runtime.ReadMemStats(&after)
			names := hostNames(got)
			if len(names) < len(tc.want) || fmt.Sprint(names[:len(tc.want)]) != fmt.Sprint(tc.want) {
				t.Errorf("hosts %q, want them to start with %q", names, tc.want)
			}
			if len(names) > links.DefaultMaxHosts {
				t.Errorf("%d hosts kept", len(names))
			}
			if got.Truncated != tc.truncated {
				t.Errorf("truncated %v, want %v", got.Truncated, tc.truncated)
			}
			// Generous: a quadratic path takes minutes here, not seconds.
			if d > 10*time.Second {
				t.Errorf("took %v", d)
			}
			t.Logf("%d bytes in %v, %d MiB allocated, %d hosts, %d URLs, %d dropped, err %v",
				len(tc.msg), d.Round(time.Millisecond), (after.TotalAlloc-before.TotalAlloc)>>20, len(names), got.URLs, got.Dropped, got.Err)
		})
	}
}
