package milter

import (
	"context"
	"testing"

	gm "github.com/d--j/go-milter"

	"github.com/aupguard/aupguard/internal/engine/policy"
)

// foldingCheck adds fields the way the checks do: values folded with
// CRLF, with or without the leading space.
type foldingCheck struct{}

func (foldingCheck) Name() string { return "folding" }
func (foldingCheck) EOM(_ context.Context, t *policy.Txn) ([]policy.Finding, error) {
	t.AddHeader("X-Folded", "a=1;\r\n\tb=2;\r\n\tc=3")
	t.AddHeader("X-Spaced", " plain")
	t.AddHeader("X-Odd", " x\ry\x00z")
	return nil, nil
}

// TestAddedHeadersReachTheMTAWithLF: Postfix wants LF line ends in the
// values of header modifications (CRLF would give it CR CR LF) and a
// leading space after the colon; a NUL cannot go on the wire.
func TestAddedHeadersReachTheMTAWithLF(t *testing.T) {
	s := startServer(t, foldingCheck{})
	cs := session(t, s, "acme", "203.0.113.9")
	if act, err := cs.Mail("news@acme.example", ""); err != nil || act.StopProcessing() {
		t.Fatalf("mail: %v %v", act, err)
	}
	if act, err := cs.Rcpt("alice@example.org", ""); err != nil || act.StopProcessing() {
		t.Fatalf("rcpt: %v %v", act, err)
	}
	if _, err := cs.DataStart(); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.HeaderField("From", " <news@acme.example>", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.HeaderEnd(); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.BodyChunk([]byte("hello\r\n")); err != nil {
		t.Fatal(err)
	}
	mods, act, err := cs.End()
	if err != nil || act.Type != gm.ActionAccept {
		t.Fatalf("end: %v %v", act, err)
	}
	// Inserted at index 0 last first, so that they end up on top in the
	// order added.
	want := []struct{ name, value string }{
		{"X-Odd", " x\ny z"},
		{"X-Spaced", " plain"},
		{"X-Folded", " a=1;\n\tb=2;\n\tc=3"},
	}
	if len(mods) != len(want) {
		t.Fatalf("modifications %+v", mods)
	}
	for i, w := range want {
		m := mods[i]
		if m.Type != gm.ActionInsertHeader || m.HeaderIndex != 0 || m.HeaderName != w.name || m.HeaderValue != w.value {
			t.Errorf("modification %d: %v %d %q %q, want insert at 0 %q %q", i, m.Type, m.HeaderIndex, m.HeaderName, m.HeaderValue, w.name, w.value)
		}
	}
}
