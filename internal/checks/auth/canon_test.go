package auth

import (
	"bytes"
	"testing"
)

func TestRelaxedHeader(t *testing.T) {
	tests := []struct{ name, value, want string }{
		{"Subject", " hello", "subject:hello\r\n"},
		{"SUBJECT ", "\t hello  \t world \t", "subject:hello world\r\n"},
		{"To", " a@example.com,\r\n\tb@example.com", "to:a@example.com, b@example.com\r\n"},
		{"To", " a,\n  b", "to:a, b\r\n"},
		{"X-Empty", "", "x-empty:\r\n"},
		{"X-Empty", "   ", "x-empty:\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name+tt.value, func(t *testing.T) {
			if got := relaxedHeader(tt.name, tt.value); got != tt.want {
				t.Fatalf("got %q want %q", got, tt.want)
			}
		})
	}
}

// TestRelaxedBody checks the examples of RFC 6376 §3.4.5 and the edge
// cases, for every way of cutting the input into chunks.
func TestRelaxedBody(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"rfc 6376 3.4.5", " C \r\nD \t E\r\n\r\n\r\n", " C\r\nD E\r\n"},
		{"empty", "", ""},
		{"only empty lines", "\r\n\r\n\r\n", ""},
		{"only white space lines", "  \r\n\t\r\n", ""},
		{"inner empty lines kept", "a\r\n\r\n\r\nb\r\n", "a\r\n\r\n\r\nb\r\n"},
		{"white space line inside becomes empty", "a\r\n \t \r\nb\r\n", "a\r\n\r\nb\r\n"},
		{"missing final CRLF", "a  b", "a b\r\n"},
		{"bare CR is content", "a\rb\r\n", "a\rb\r\n"},
		{"CR before CRLF", "a\r\r\n", "a\r\r\n"},
		{"trailing CR", "a\r", "a\r\r\n"},
		{"leading white space reduced", "\t\t x\r\n", " x\r\n"},
	}
	for _, tt := range tests {
		for n := 1; n <= len(tt.in)+1; n++ {
			var out bytes.Buffer
			r := newRelaxedBody(&out)
			in := []byte(tt.in)
			for len(in) > 0 {
				c := in
				if len(c) > n {
					c = c[:n]
				}
				if _, err := r.Write(c); err != nil {
					t.Fatal(err)
				}
				in = in[len(c):]
			}
			if err := r.Close(); err != nil {
				t.Fatal(err)
			}
			if got := out.String(); got != tt.want {
				t.Fatalf("%s, chunks of %d: got %q want %q", tt.name, n, got, tt.want)
			}
		}
	}
}
