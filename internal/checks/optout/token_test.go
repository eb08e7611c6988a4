package optout

import (
	"encoding/base64"
	"errors"
	"strconv"
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

// legacyStamp is a version 1 stamp ("c=ID; t=UNIXTIME; s=SIG"), as the
// gateway wrote before recipients were bound.
func legacyStamp(customer string, now time.Time) string {
	ts := strconv.FormatInt(now.Unix(), 10)
	mac := testKey.Sign(stampV1Purpose, []byte(customer+"\x00"+ts))
	return "c=" + customer + "; t=" + ts + "; s=" + base64.RawURLEncoding.EncodeToString(mac[:macLen])
}

func TestStamp(t *testing.T) {
	one := Stamp(testKey, "acme", "REF1", "jane@example.org", t0)
	multi := Stamp(testKey, "acme", "REF2", "", t0)
	tag := RcptTag(testKey, "REF1", "jane@example.org")
	tests := []struct {
		name, value, want, ref, tag string
	}{
		{"one recipient", one, "acme", "REF1", tag},
		{"several recipients", multi, "acme", "REF2", ""},
		{"version 1 still names the customer", legacyStamp("acme", t0), "acme", "", ""},
		{"folded", strings.Replace(one, "; s=", ";\r\n\ts=", 1), "acme", "REF1", tag},
		{"customer swapped", strings.Replace(one, "c=acme", "c=beta", 1), "", "", ""},
		{"time changed", strings.Replace(one, "t=", "t=1", 1), "", "", ""},
		{"message swapped", strings.Replace(one, "m=REF1", "m=REF2", 1), "", "", ""},
		{"recipient tag swapped", strings.Replace(one, "r="+tag, "r="+RcptTag(testKey, "REF1", "mallory@example.org"), 1), "", "", ""},
		{"recipient tag dropped: a multi-recipient stamp is not made from a one-recipient one", strings.Replace(one, "; r="+tag, "", 1), "", "", ""},
		{"downgraded to version 1", strings.Replace(strings.Replace(one, "; r="+tag, "", 1), "; m=REF1", "", 1), "", "", ""},
		{"bad ref", strings.Replace(multi, "m=REF2", "m=a:b", 1), "", "", ""},
		{"no signature", "c=acme; t=1", "", "", ""},
		{"garbage", "hello", "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			si, err := VerifyStamp(testKey, tt.value)
			if si.Customer != tt.want || si.Ref != tt.ref || si.RcptTag != tt.tag || (tt.want == "") != (err != nil) {
				t.Fatalf("VerifyStamp(%q) = %+v, %v; want %q ref %q tag %q", tt.value, si, err, tt.want, tt.ref, tt.tag)
			}
			if si.Customer != "" && !si.Issued.Equal(t0.Truncate(time.Second)) {
				t.Fatalf("issued %v, want %v", si.Issued, t0)
			}
		})
	}
}

func TestNewStampRefIsUniqueAndKeySafe(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 1000; i++ {
		r := NewStampRef("AB7K-9:x\n")
		if !validRef(r) || !strings.HasPrefix(r, "AB7K9x-") || seen[r] {
			t.Fatalf("ref %q (valid %v, seen %v)", r, validRef(r), seen[r])
		}
		seen[r] = true
	}
}
