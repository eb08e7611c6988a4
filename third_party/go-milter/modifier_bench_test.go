package milter

import (
	"bytes"
	"testing"

	"github.com/d--j/go-milter/internal/wire"
)

// endOfMessageHeaders are the fields aupguard adds at end of message, as
// its milter adapter passes them (folding as LF, see aupguard's
// milter/adapter.go).
var endOfMessageHeaders = []struct{ name, value string }{
	{"DKIM-Signature", " v=1; a=ed25519-sha256; c=relaxed/relaxed; d=example.com; s=sel-ed25519;\n\tt=1764460800; h=From:To:Subject:Date:Message-ID:List-Unsubscribe:\n\tList-Unsubscribe-Post:Feedback-ID;\n\tbh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;\n\tb=Ll1bQo8rxUF5Z2RXSyWfVs9WqJSpmk+ZAbh5ZAjYlEbd2TbtoIxkGlb1xX1gOyW3s5GjrSX5\n\t mMhz7OmPkGrBg=="},
	{"Authentication-Results", " mx.provider.example; spf=pass smtp.mailfrom=example.com;\n\tdkim=none; dmarc=pass header.from=example.com"},
	{"List-Unsubscribe", " <https://unsubscribe.provider.example/u/AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8>"},
	{"List-Unsubscribe-Post", " List-Unsubscribe=One-Click"},
	{"Feedback-ID", " 1a2b3c4d:bench:aupguard"},
}

// BenchmarkInsertHeaders inserts the end-of-message fields, each packet
// handed to a writer that keeps nothing: what the library allocates per
// header.
func BenchmarkInsertHeaders(b *testing.B) {
	m := &modifier{
		state:       modifierStateReadWrite,
		writePacket: func(*wire.Message) error { return nil },
		version:     6,
		actions:     OptAddHeader | OptChangeHeader,
	}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		for j := len(endOfMessageHeaders) - 1; j >= 0; j-- {
			h := endOfMessageHeaders[j]
			if err := m.InsertHeader(0, h.name, h.value); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// TestHeaderPackets pins the bytes of the header modification packets:
// NUL becomes SP, CR LF and a lone CR become LF (Postfix wants LF line
// ends in header values), index big-endian.
func TestHeaderPackets(t *testing.T) {
	var got []*wire.Message
	m := &modifier{
		state:       modifierStateReadWrite,
		writePacket: func(msg *wire.Message) error { got = append(got, msg); return nil },
		version:     6,
		actions:     OptAddHeader | OptChangeHeader,
	}
	value := " a\r\n\tb\rc\x00d\n\te"
	want := "X-T\x00 a\n\tb\nc d\n\te\x00"
	if err := m.AddHeader("X-T", value); err != nil {
		t.Fatal(err)
	}
	if err := m.InsertHeader(0x01020304, "X-T", value); err != nil {
		t.Fatal(err)
	}
	if err := m.ChangeHeader(7, "X-T", value); err != nil {
		t.Fatal(err)
	}
	for i, w := range []struct {
		code wire.Code
		data string
	}{
		{wire.Code(wire.ActAddHeader), want},
		{wire.Code(wire.ActInsertHeader), "\x01\x02\x03\x04" + want},
		{wire.Code(wire.ActChangeHeader), "\x00\x00\x00\x07" + want},
	} {
		if got[i].Code != w.code || !bytes.Equal(got[i].Data, []byte(w.data)) {
			t.Errorf("packet %d: %c %q, want %c %q", i, got[i].Code, got[i].Data, w.code, w.data)
		}
	}
}
