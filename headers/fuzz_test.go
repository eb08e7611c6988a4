package headers

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"unicode/utf8"

	"github.com/aupguard/aupguard/internal/engine/policy"
	"github.com/aupguard/aupguard/internal/mailaddr"
)

// The fuzz targets' seed corpora live in testdata/fuzz/<Target>/; the
// f.Add seeds below cover the main shapes too. Run each with e.g.
// go test -run=XXX -fuzz=FuzzParseAddressList -fuzztime=20s ./headers/

// FuzzParseAddressList: the parser never panics; what it accepts
// round-trips through Mailbox.Address; what it refuses wraps ErrSyntax.
func FuzzParseAddressList(f *testing.F) {
	for _, s := range []string{
		"alice@example.com",
		`"Smith, John" <j@example.com>, bob@example.org`,
		"Team: a@x.example, B <b@y.example>;, c@z.example",
		"<@a.example,@b.example:x@c.example>",
		"=?UTF-8?B?Wm/Dqw==?= <z@x.example> (comment (nested))",
		`a."b c"@d.example`,
		"x@[192.0.2.1]",
		"ｓｅｒｖｉｃｅ＠ｐａｙｐａｌ．ｃｏｍ <a@b.example>",
		"(((((((",
		`"\`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ms, err := ParseAddressList(s)
		if err != nil {
			if !errors.Is(err, ErrSyntax) {
				t.Fatalf("error %v does not wrap ErrSyntax", err)
			}
			return
		}
		for _, m := range ms {
			if m.Local == "" || m.Domain == "" {
				t.Fatalf("accepted mailbox without local part or domain: %+v", m)
			}
			back, err := ParseMailbox("<" + m.Address() + ">")
			if err != nil {
				t.Fatalf("%q from %q does not parse back: %v", m.Address(), s, err)
			}
			if back.Local != m.Local || back.Domain != m.Domain {
				t.Fatalf("round trip %q: got %q @ %q", m.Address(), back.Local, back.Domain)
			}
			_ = AddressLike(m.Name)
		}
		_, _ = ParseMailboxList(s)
	})
}

// FuzzParseHeaders: SplitHeader and every header check accept any input
// without panicking, and every finding is a named 5xx refusal.
func FuzzParseHeaders(f *testing.F) {
	for _, s := range []string{
		"Received: from a by relay.provider.example id Q1; d\r\nFrom: a@acme.example\r\nDate: d\r\n\r\nbody",
		"From: \"x@bank.example\" <a@acme.example>\nFrom: b@evil.example\nSubject: =?utf-8?q?a=0D=0Ab?=\n\n",
		"Authentication-Results: relay.provider.example; spf=pass\nARC-Authentication-Results: i=1; relay.provider.example\nReturn-Path: <x@y>\n",
		"X-Originating-IP: [198.51.100.1], junk\r\nX Bad: \x00\x1b\rz\r\n",
		" continuation first\nno colon\n\n",
	} {
		f.Add([]byte(s), "Q1")
	}
	p, _ := mailaddr.ParsePattern("acme.example")
	h, _ := mailaddr.ParsePattern("*.provider.example")
	s := &Settings{
		MaxCount: 50, MaxBytes: 4096, MaxLineLength: 998,
		OriginHeaders: []string{"X-Originating-IP"},
		Provider: Provider{
			Hostnames:   []mailaddr.Pattern{h},
			Networks:    []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")},
			AuthservIDs: []string{"relay.provider.example"},
		},
		TrustedReceived: 1,
	}
	checks := []policy.EOMChecker{NewSyntax(s), NewIdentity(s), NewForgery(s)}
	f.Fuzz(func(t *testing.T, data []byte, _ string) {
		hs, off := SplitHeader(data)
		if off < 0 || off > len(data) {
			t.Fatalf("body offset %d out of range 0..%d", off, len(data))
		}
		txn := &policy.Txn{
			Conn:     &policy.Conn{ClientAddr: netip.MustParseAddr("192.0.2.1")},
			Customer: &policy.Customer{ID: "acme", Domains: []mailaddr.Pattern{p}},
			Headers:  hs,
		}
		for _, c := range checks {
			fs, err := c.EOM(context.Background(), txn)
			if err != nil {
				t.Fatalf("%s: error %v", c.Name(), err)
			}
			for _, f := range fs {
				if f.Name == "" || f.Reply.Code()/100 != 5 || !utf8.ValidString(f.Reply.Text()) {
					t.Fatalf("%s: bad finding %+v", c.Name(), f)
				}
			}
		}
	})
}

// FuzzParseTrace: the Received:, authserv-id, origin and encoded-word
// parsers never panic on any value.
func FuzzParseTrace(f *testing.F) {
	for _, s := range []string{
		" from c (c [192.0.2.10]) by relay.provider.example (Postfix) with ESMTPSA id 4Q; Mon, 3 Mar 2025",
		" by [IPv6:2001:db8::1] id <abc>;",
		" i=1; lists.example.org; spf=pass",
		" (a (b) \\) c) x; y",
		" [192.0.2.1], 198.51.100.7:25, unknown",
		"=?UTF-8?Q?a=0D=0Ab?= =?iso-8859-1?q?=85?= =?koi8-r?b?????=",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r := ParseReceived(s)
		for _, a := range r.ByAddrs {
			if !a.IsValid() {
				t.Fatalf("invalid address from %q", s)
			}
		}
		_ = AuthServID(s, false)
		_ = AuthServID(s, true)
		addrs, _ := OriginAddrs(s)
		for _, a := range addrs {
			if !a.IsValid() || a.Is4In6() {
				t.Fatalf("origin address %v from %q not valid and unmapped", a, s)
			}
		}
		for _, w := range EncodedWords(s) {
			if len(w.Decoded) > maxDecoded*4 {
				t.Fatalf("encoded-word decoded to %d bytes", len(w.Decoded))
			}
			_, _ = HasControl(w.Decoded)
		}
		_ = DecodePhrase(s)
		if n := Normalize(s); !utf8.ValidString(n) {
			t.Fatalf("Normalize(%q) is not valid UTF-8", s)
		}
	})
}
