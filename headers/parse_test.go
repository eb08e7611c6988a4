package headers

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func TestParseAddressList(t *testing.T) {
	type mb struct{ Name, Local, Domain, Group string }
	tests := []struct {
		in   string
		want []mb
		err  bool
	}{
		{in: "alice@example.com", want: []mb{{"", "alice", "example.com", ""}}},
		{in: " Alice <alice@example.com>", want: []mb{{"Alice", "alice", "example.com", ""}}},
		{in: `"Smith, John" <j@example.com>, bob@example.org`, want: []mb{{"Smith, John", "j", "example.com", ""}, {"", "bob", "example.org", ""}}},
		{in: "John Q. Public <jqp@example.com>", want: []mb{{"John Q. Public", "jqp", "example.com", ""}}},
		{in: "\"a\\\"b\" <x@y.example>", want: []mb{{`a"b`, "x", "y.example", ""}}},
		{in: `"john doe"@example.com`, want: []mb{{"", `"john doe"`, "example.com", ""}}},
		{in: "john . doe @ example . com", want: []mb{{"", "john.doe", "example.com", ""}}},
		{in: "x@[192.0.2.1]", want: []mb{{"", "x", "[192.0.2.1]", ""}}},
		{in: "x@example.com.", want: []mb{{"", "x", "example.com.", ""}}},
		{in: "<@a.example,@b.example:x@c.example>", want: []mb{{"", "x", "c.example", ""}}},
		{in: "Team: a@x.example, B <b@y.example>;, c@z.example", want: []mb{{"", "a", "x.example", "Team"}, {"B", "b", "y.example", "Team"}, {"", "c", "z.example", ""}}},
		{in: "undisclosed-recipients:;", want: []mb{}},
		{in: ", , a@x.example,,", want: []mb{{"", "a", "x.example", ""}}},
		{in: "=?UTF-8?B?Wm/Dqw==?= <z@x.example>", want: []mb{{"Zoë", "z", "x.example", ""}}},
		{in: "=?ISO-8859-1?Q?J=F6rg?= =?ISO-8859-1?Q?_S?= <j@x.example>", want: []mb{{"Jörg S", "j", "x.example", ""}}},
		{in: "=?windows-1252?Q?=80uro?= <e@x.example>", want: []mb{{"€uro", "e", "x.example", ""}}},
		{in: "Anna (the boss) <a@x.example> (work)", want: []mb{{"Anna", "a", "x.example", ""}}},
		{in: "Ünïcödé <ü@bücher.example>", want: []mb{{"Ünïcödé", "ü", "bücher.example", ""}}},
		{in: "Alice\r\n <alice@example.com>", want: []mb{{"Alice", "alice", "example.com", ""}}},
		{in: "", want: []mb{}},
		{in: "alice", err: true},
		{in: "alice@", err: true},
		{in: "<alice@example.com", err: true},
		{in: "Alice <>", err: true},
		{in: `"unterminated <a@b.example>`, err: true},
		{in: "\"\\\r\"@x.example", err: true}, // a quoted CR hides the local part (fuzz)
		{in: "\"a\\\nb\" <a@x.example>", err: true},
		{in: "Anna (a\\\rb) <a@x.example>", want: []mb{{"Anna", "a", "x.example", ""}}}, // in a comment it hides nothing
		{in: "(unterminated a@b.example", err: true},
		{in: "a@b.example c@d.example", err: true},
		{in: "a b@c.example", err: true},
		{in: "x@[1.2.3.4", err: true},
		{in: "A: B: c@d.example;;", err: true},
		{in: ".a@b.example", err: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			ms, err := ParseAddressList(tt.in)
			if tt.err {
				if err == nil {
					t.Fatalf("got %+v, want an error", ms)
				}
				if !errors.Is(err, ErrSyntax) {
					t.Errorf("error %v does not wrap ErrSyntax", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := []mb{}
			for _, m := range ms {
				got = append(got, mb{m.Name, m.Local, m.Domain, m.Group})
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestParseMailboxAndList(t *testing.T) {
	tests := []struct {
		in          string
		listErr     bool
		mailboxErr  bool
		wantComment []string
	}{
		{in: "a@x.example (Alice)", wantComment: []string{"Alice"}},
		{in: "(pre) a@x.example (post (nested))", wantComment: []string{"pre", "post (nested)"}},
		{in: "a@x.example, b@x.example", mailboxErr: true},
		{in: "G: a@x.example;", listErr: true, mailboxErr: true},
		{in: "", listErr: true, mailboxErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			_, err := ParseMailboxList(tt.in)
			if (err != nil) != tt.listErr {
				t.Errorf("ParseMailboxList error %v, want error %v", err, tt.listErr)
			}
			m, err := ParseMailbox(tt.in)
			if (err != nil) != tt.mailboxErr {
				t.Fatalf("ParseMailbox error %v, want error %v", err, tt.mailboxErr)
			}
			if err == nil && !reflect.DeepEqual(m.Comments, tt.wantComment) {
				t.Errorf("comments %q, want %q", m.Comments, tt.wantComment)
			}
		})
	}
}

func TestAddressLike(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"service@paypal.com", []string{"paypal.com"}},
		{"PayPal Service", nil},
		{"Sales @ Acme", nil},
		{"info@localhost", nil},
		{"ｓｅｒｖｉｃｅ＠ｐａｙｐａｌ．ｃｏｍ", []string{"paypal.com"}},
		{"security﹫bank.example", []string{"bank.example"}},
		{"a@pay\u200bpal.com", []string{"paypal.com"}},
		{"a@b.example and c@d.example.", []string{"b.example", "d.example"}},
		{"x@пример.рф", []string{"пример.рф"}},
		{"@only.example", nil},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got := AddressLike(tt.in)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestEncodedWordsAndControl(t *testing.T) {
	tests := []struct {
		in      string
		words   int
		control bool
	}{
		{"plain", 0, false},
		{"=?UTF-8?Q?caf=C3=A9?=", 1, false},
		{"=?UTF-8?Q?a=0D=0Ab?= and =?UTF-8?B?4oCu?=", 2, true},
		{"=?UTF-8?B?4oCu?=", 1, true},
		{"=?UTF-8?Q?tab=09ok?=", 1, false},
		{"=?x-unknown?Q?a=00?=", 1, false},
		{"=?UTF-8?Q?broken", 0, false},
		{"=?UTF-8?Q?with space?=", 0, false},
		{"=?ISO-8859-1?Q?=85?=", 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			ws := EncodedWords(tt.in)
			if len(ws) != tt.words {
				t.Fatalf("%d words, want %d: %+v", len(ws), tt.words, ws)
			}
			control := false
			for _, w := range ws {
				if _, ok := HasControl(w.Decoded); ok && w.OK {
					control = true
				}
			}
			if control != tt.control {
				t.Errorf("control %v, want %v", control, tt.control)
			}
		})
	}
}

func TestParseReceived(t *testing.T) {
	tests := []struct {
		in   string
		want Received
	}{
		{
			in:   " from client.example (client.example [192.0.2.10])\r\n\tby relay.provider.example (Postfix) with ESMTPSA id 4QxYz\r\n\tfor <bob@example.net>; Mon, 3 Mar 2025 10:00:00 +0100 (CET)",
			want: Received{From: "client.example", By: "relay.provider.example", ID: "4QxYz"},
		},
		{
			in:   " from x (x [192.0.2.3]) by gw ([198.51.100.7]) with SMTP; date",
			want: Received{From: "x", By: "gw", ByAddrs: []netip.Addr{netip.MustParseAddr("198.51.100.7")}},
		},
		{
			in:   " by [IPv6:2001:db8::1] id <abc>;",
			want: Received{By: "[IPv6:2001:db8::1]", ByAddrs: []netip.Addr{netip.MustParseAddr("2001:db8::1")}, ID: "abc"},
		},
		{
			in:   " from mail (helo=by.example) by BY.example (Exim 4.96) with esmtp id 1abc-0001",
			want: Received{From: "mail", By: "BY.example", ID: "1abc-0001"},
		},
		{in: " ((((( by evil", want: Received{}},
		{in: "", want: Received{}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got := ParseReceived(tt.in)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestAuthServID(t *testing.T) {
	tests := []struct {
		in   string
		arc  bool
		want string
	}{
		{" mx.example.org 1; spf=pass", false, "mx.example.org"},
		{" (comment) MX.example.org;\r\n dkim=pass", false, "MX.example.org"},
		{" example.net; none", false, "example.net"},
		{" i=1; lists.example.org; spf=pass", true, "lists.example.org"},
		{" i = 2 ; a.example ; dmarc=pass", true, "a.example"},
		{" i=1", true, ""},
		{"", false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := AuthServID(tt.in, tt.arc); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestOriginAddrs(t *testing.T) {
	tests := []struct {
		in    string
		addrs int
		bad   int
	}{
		{" [192.0.2.1]", 1, 0},
		{" 192.0.2.1, 198.51.100.7", 2, 0},
		{" [IPv6:2001:db8::5]", 1, 0},
		{" 192.0.2.1:5555", 1, 0},
		{" ::ffff:192.0.2.1 (mapped)", 1, 0},
		{" unknown", 0, 1},
		{" ", 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			a, b := OriginAddrs(tt.in)
			if len(a) != tt.addrs || len(b) != tt.bad {
				t.Errorf("addrs %v bad %q, want %d and %d", a, b, tt.addrs, tt.bad)
			}
		})
	}
}

func TestSplitHeader(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string // "Name=Value"
		body string
	}{
		{"lf", "A: 1\nB: 2\n x\n\nbody\n", []string{"A= 1", "B= 2\r\n x"}, "body\n"},
		{"crlf keeps bare lf", "A: 1\nB\r\nC: 2\r\n\r\nbody", []string{"A= 1\nB", "C= 2"}, "body"},
		{"no colon", "Not a header\nA: 1\n\n", []string{"Not a header=", "A= 1"}, ""},
		{"no body", "A: 1", []string{"A= 1"}, ""},
		{"leading continuation", " x\nA: 1\n\n", []string{" x=", "A= 1"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hs, off := SplitHeader([]byte(tt.in))
			var got []string
			for _, h := range hs {
				got = append(got, h.Name+"="+h.Value)
			}
			if strings.Join(got, "|") != strings.Join(tt.want, "|") {
				t.Errorf("fields %q, want %q", got, tt.want)
			}
			if tt.in[off:] != tt.body {
				t.Errorf("body %q, want %q", tt.in[off:], tt.body)
			}
		})
	}
}
