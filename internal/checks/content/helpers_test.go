package content

import (
	"archive/zip"
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/engine/policy"
	"github.com/aupguard/aupguard/internal/testkit/testenv"
)

// testPattern is the bytes the test signature matches; no real malware is
// ever used.
var testPattern = []byte("AUPGUARD-TEST-MALWARE-PATTERN-7f3c9e1d")

// testSigName is the signature's name as clamd reports it.
const testSigName = "AupguardTestSig"

// startClamd starts a private clamd knowing only the test signature.
func startClamd(t *testing.T, maxLen int64) *testenv.Clamd {
	t.Helper()
	return testenv.StartClamd(t, testenv.ClamdOptions{
		Signatures:      map[string][]byte{testSigName: testPattern},
		StreamMaxLength: maxLen,
	})
}

// message is a header section and a body, as the milter hands them.
type message struct {
	headers []policy.Header
	body    string
}

// plainMsg is a text message carrying body.
func plainMsg(body string) message {
	return message{headers: []policy.Header{
		{Name: "From", Value: " a@acme.example"}, {Name: "To", Value: " b@mailbox.example"},
		{Name: "Subject", Value: " hello"}, {Name: "MIME-Version", Value: " 1.0"},
		{Name: "Content-Type", Value: " text/plain; charset=us-ascii"},
	}, body: body}
}

// attachmentMsg is a multipart/mixed message whose attachment (base64)
// holds data.
func attachmentMsg(name string, data []byte) message {
	b64 := base64.StdEncoding.EncodeToString(data)
	var lines []string
	for len(b64) > 76 {
		lines = append(lines, b64[:76])
		b64 = b64[76:]
	}
	lines = append(lines, b64)
	body := "--BOUNDARY\r\nContent-Type: text/plain\r\n\r\nSee the attachment.\r\n" +
		"--BOUNDARY\r\nContent-Type: application/octet-stream; name=\"" + name + "\"\r\n" +
		"Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"" + name + "\"\r\n\r\n" +
		strings.Join(lines, "\r\n") + "\r\n--BOUNDARY--\r\n"
	return message{headers: []policy.Header{
		{Name: "From", Value: " a@acme.example"}, {Name: "To", Value: " b@mailbox.example"},
		{Name: "Subject", Value: " invoice"}, {Name: "MIME-Version", Value: " 1.0"},
		{Name: "Content-Type", Value: " multipart/mixed; boundary=\"BOUNDARY\""},
	}, body: body}
}

// zipOf returns a zip archive holding one file with data.
func zipOf(t testing.TB, name string, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, err := zw.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// txnFor is a transaction carrying m's header section.
func txnFor(m message) *policy.Txn {
	t := policy.NewTxn(&policy.Conn{}, &policy.Customer{ID: "acme"}, "ref1", time.Now())
	t.Headers = m.headers
	for _, h := range m.headers {
		t.HeaderBytes += int64(len(h.Name) + len(h.Value) + 3)
	}
	return t
}

// feed streams m's body to the checks' writers in chunks of size chunk,
// the way the session does (Close after the last chunk).
func feed(t *policy.Txn, m message, chunk int, checks ...policy.BodyChecker) {
	var ws []io.Writer
	for _, c := range checks {
		if w := c.Body(t); w != nil {
			ws = append(ws, w)
		}
	}
	body := []byte(m.body)
	for len(body) > 0 {
		n := min(chunk, len(body))
		t.BodySize += int64(n)
		for i, w := range ws {
			if w == nil {
				continue
			}
			if _, err := w.Write(body[:n]); err != nil {
				ws[i] = nil
			}
		}
		body = body[n:]
	}
	for _, w := range ws {
		if c, ok := w.(io.Closer); ok && w != nil {
			_ = c.Close()
		}
	}
}

// sysClock is the real clock.
var sysClock clock.Clock = clock.System{}

// raw renders m as the client sends it.
func (m message) raw(id int) []byte {
	var b strings.Builder
	for _, h := range m.headers {
		b.WriteString(h.Name + ":" + h.Value + "\r\n")
	}
	fmt.Fprintf(&b, "Message-ID: <%d.%d@acme.example>\r\nDate: Mon, 07 Dec 2026 10:00:00 +0000\r\n\r\n", id, time.Now().UnixNano())
	b.WriteString(m.body)
	return []byte(b.String())
}
