package secrets

import (
	"testing"
	"time"
)

// TestProviderStamp pins who can make a stamp the gateway accepts: the
// holder of the same key, for the same sender, within the skew.
func TestProviderStamp(t *testing.T) {
	k, other := Key("0123456789abcdef0123456789abcdef"), Key("fedcba9876543210fedcba9876543210")
	now := time.Unix(1_800_000_000, 0)
	good := k.ProviderStamp("Postmaster@provider.example", now)
	tests := []struct {
		name, sender, stamp string
		at                  time.Time
		want                bool
	}{
		{"its own stamp", "postmaster@provider.example", good, now, true},
		{"later within the skew", "postmaster@provider.example", good, now.Add(StampSkew - time.Second), true},
		{"after the skew", "postmaster@provider.example", good, now.Add(StampSkew + time.Second), false},
		{"before its time", "postmaster@provider.example", good, now.Add(-StampSkew - time.Second), false},
		{"another sender", "billing@provider.example", good, now, false},
		{"another key's stamp", "postmaster@provider.example", other.ProviderStamp("postmaster@provider.example", now), now, false},
		{"a changed time", "postmaster@provider.example", "aupg1.1800000001." + good[len("aupg1.1800000000."):], now, false},
		{"empty", "postmaster@provider.example", "", now, false},
		{"no mac", "postmaster@provider.example", "aupg1.1800000000", now, false},
		{"garbage time", "postmaster@provider.example", "aupg1.x.y", now, false},
		{"huge time", "postmaster@provider.example", "aupg1.99999999999999999999.y", now, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := k.VerifyProviderStamp(tc.sender, tc.stamp, tc.at); got != tc.want {
				t.Fatalf("VerifyProviderStamp(%q, %q) = %v, want %v", tc.sender, tc.stamp, got, tc.want)
			}
		})
	}
	if Key(nil).VerifyProviderStamp("a@b", Key(nil).ProviderStamp("a@b", now), now) {
		t.Fatal("an empty key verifies a stamp")
	}
	for _, c := range good {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.') {
			t.Fatalf("stamp %q has %q, not plain xtext", good, c)
		}
	}
}
