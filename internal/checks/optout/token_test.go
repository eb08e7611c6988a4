package optout

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestToken(t *testing.T) {
	good := NewToken(testKey, "acme", "jane@example.com", t0)
	if len(good) > 80 {
		t.Errorf("token is %d characters long, want it short: %s", len(good), good)
	}
	flip := func(s string, i int) string {
		b := []byte(s)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}
	tests := []struct {
		name  string
		token string
		ttl   time.Duration
		now   time.Time
		ok    bool
	}{
		{"valid", good, 0, t0.Add(365 * 24 * time.Hour), true},
		{"valid within ttl", good, 48 * time.Hour, t0.Add(47 * time.Hour), true},
		{"expired", good, 48 * time.Hour, t0.Add(49 * time.Hour), false},
		{"altered payload", flip(good, 5), 0, t0, false},
		{"altered mac", flip(good, len(good)-2), 0, t0, false},
		{"truncated", good[:len(good)-4], 0, t0, false},
		{"other key", NewToken([]byte("another-secret-key-123"), "acme", "jane@example.com", t0), 0, t0, false},
		{"not base64", "!!!!" + good, 0, t0, false},
		{"empty", "", 0, t0, false},
		{"padded base64", good + "==", 0, t0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := ParseToken(testKey, tt.token, tt.ttl, tt.now)
			if tt.ok {
				if err != nil || tok.Customer != "acme" || tok.Recipient != "jane@example.com" || !tok.Issued.Equal(t0) {
					t.Fatalf("ParseToken = %+v, %v", tok, err)
				}
				return
			}
			if !errors.Is(err, ErrBadToken) {
				t.Fatalf("ParseToken(%q) = %+v, %v; want ErrBadToken", tt.token, tok, err)
			}
		})
	}
}

func TestStamp(t *testing.T) {
	v := Stamp(testKey, "acme", t0)
	tests := []struct {
		name, value, want string
	}{
		{"valid", v, "acme"},
		{"folded", strings.Replace(v, "; s=", ";\r\n\ts=", 1), "acme"},
		{"customer swapped", strings.Replace(v, "c=acme", "c=beta", 1), ""},
		{"time changed", strings.Replace(v, "t=", "t=1", 1), ""},
		{"no signature", "c=acme; t=1", ""},
		{"garbage", "hello", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseStamp(testKey, tt.value)
			if got != tt.want || (tt.want == "") != (err != nil) {
				t.Fatalf("ParseStamp(%q) = %q, %v; want %q", tt.value, got, err, tt.want)
			}
		})
	}
}
