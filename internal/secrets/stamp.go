package secrets

import (
	"crypto/subtle"
	"strconv"
	"strings"
	"time"
)

// stampPrefix starts a provider-mail stamp ("aupg1.UNIXTIME.MAC").
const stampPrefix = "aupg1."

// StampSkew is how far a stamp's time may lie from the gateway's clock.
const StampSkew = 15 * time.Minute

// ProviderStamp returns the stamp the gateway's own mail (reports,
// notifications) carries as its DSN envelope id (RFC 3461 ENVID): the time
// and a keyed hash of the time and the envelope sender. Only a holder of
// the gateway's secret can make one; it is valid for StampSkew around t,
// for that sender only. Characters: [a-z0-9.], valid xtext.
func (k Key) ProviderStamp(sender string, t time.Time) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return stampPrefix + ts + "." + k.Hash("provider-mail", ts+"\x00"+strings.ToLower(sender))
}

// VerifyProviderStamp reports whether stamp is a ProviderStamp of this key
// for sender, made within StampSkew of now.
func (k Key) VerifyProviderStamp(sender, stamp string, now time.Time) bool {
	rest, ok := strings.CutPrefix(stamp, stampPrefix)
	if !ok || len(k) == 0 {
		return false
	}
	ts, mac, ok := strings.Cut(rest, ".")
	if !ok || len(ts) > 12 {
		return false
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return false
	}
	if d := now.Sub(time.Unix(sec, 0)); d > StampSkew || d < -StampSkew {
		return false
	}
	want := k.Hash("provider-mail", ts+"\x00"+strings.ToLower(sender))
	return subtle.ConstantTimeCompare([]byte(mac), []byte(want)) == 1
}
