package optout

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/aupguard/aupguard/internal/secrets"
)

// Unsubscribe tokens: URL-safe base64 (RFC 4648 §5, no padding) of
//
//	version (1 byte) | issue time, minutes since the Unix epoch (uvarint) |
//	customer id length (uvarint) | customer id | canonical recipient |
//	the first macLen bytes of HMAC-SHA256 under purpose "unsubscribe"
//
// The recipient is inside the token because the POST that RFC 8058 §3.2
// prescribes carries nothing else: the endpoint must learn who opts out
// from the URI alone. A token for a 20-character address is about 60
// characters long.
const (
	tokenVersion = 1
	macLen       = 12 // 96 bits: forging needs 2^96 tries against the endpoint
)

// ErrBadToken is returned for a forged, altered, truncated or expired token.
var ErrBadToken = errors.New("invalid unsubscribe token")

// Token is what an unsubscribe token says.
type Token struct {
	Customer  string
	Recipient string
	Issued    time.Time
}

// ErrTokenExpired is wrapped (with ErrBadToken) for a genuine link whose
// validity (optout.unsubscribe.token_ttl) is over; the Token is returned
// with it, so the page can say what still works.
var ErrTokenExpired = errors.New("link expired")

// NewToken signs a token for a customer and a canonical recipient.
func NewToken(key secrets.Key, customer, recipient string, issued time.Time) string {
	var b bytes.Buffer
	b.WriteByte(tokenVersion)
	b.Write(binary.AppendUvarint(nil, uint64(issued.Unix()/60)))
	b.Write(binary.AppendUvarint(nil, uint64(len(customer))))
	b.WriteString(customer)
	b.WriteString(recipient)
	mac := key.Sign("unsubscribe", b.Bytes())
	b.Write(mac[:macLen])
	return base64.RawURLEncoding.EncodeToString(b.Bytes())
}

// ParseToken verifies a token; ttl > 0 refuses tokens older than ttl at now.
func ParseToken(key secrets.Key, s string, ttl time.Duration, now time.Time) (Token, error) {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(raw) < 4+macLen {
		return Token{}, ErrBadToken
	}
	payload, mac := raw[:len(raw)-macLen], raw[len(raw)-macLen:]
	want := key.Sign("unsubscribe", payload)[:macLen]
	// Constant-time comparison: no timing oracle for forging a MAC.
	if !hmac.Equal(mac, want) {
		return Token{}, ErrBadToken
	}
	if payload[0] != tokenVersion {
		return Token{}, fmt.Errorf("%w: version %d", ErrBadToken, payload[0])
	}
	p := payload[1:]
	mins, n := binary.Uvarint(p)
	if n <= 0 {
		return Token{}, ErrBadToken
	}
	p = p[n:]
	clen, n := binary.Uvarint(p)
	if n <= 0 || clen == 0 || uint64(len(p)-n) <= clen {
		return Token{}, ErrBadToken
	}
	p = p[n:]
	t := Token{Customer: string(p[:clen]), Recipient: string(p[clen:]), Issued: time.Unix(int64(mins)*60, 0).UTC()}
	if validList(t.Customer) != nil || t.Customer == GlobalList || !strings.Contains(t.Recipient, "@") {
		return Token{}, ErrBadToken
	}
	// The issue time is stored to the minute, rounded down: the link was
	// issued at most a minute later, so it is judged from the end of that
	// minute and never expires before its ttl is over.
	if ttl > 0 && now.Sub(t.Issued.Add(time.Minute)) > ttl {
		return t, fmt.Errorf("%w: %w", ErrBadToken, ErrTokenExpired)
	}
	return t, nil
}

// Customer stamp: the X-AUP-Customer header the gateway puts on every
// accepted message,
//
//	c=ID; t=UNIXTIME; m=REF; [r=RTAG;] s=SIG
//
// REF is the message's own reference (unique per message), RTAG the keyed
// tag of its recipient when the message has exactly one (RcptTag), and SIG
// a truncated HMAC of all of them. It names the customer and the message
// in a complaint's copy of the message, and cannot be forged by a customer
// to blame another. A message with several recipients carries one header
// for all of them, so its stamp names no recipient: the tags of its
// recipients are stored under REF instead (Backend.PutRecipients), and a
// complaint is counted only for a recipient found there.
//
// Stamps written before recipients were bound ("c=ID; t=UNIXTIME; s=SIG",
// version 1) still verify and name the customer, but a complaint about
// them cannot be tied to a recipient and is not counted.
const StampHeader = "X-AUP-Customer"

// stampPurpose keys the stamp's MAC; stampV1Purpose that of version 1.
const (
	stampPurpose   = "stamp2"
	stampV1Purpose = "stamp"
	rcptTagPurpose = "stamp-rcpt"
	// maxRefLen bounds a stamp's message reference.
	maxRefLen = 40
)

// Stamp returns the X-AUP-Customer value for a message of customer with
// reference ref (unique per message, [A-Za-z0-9_-]) stamped at now. rcpt is
// the canonical address of its one recipient, "" for a message with
// several.
func Stamp(key secrets.Key, customer, ref, rcpt string, now time.Time) string {
	ts := strconv.FormatInt(now.Unix(), 10)
	tag := ""
	if rcpt != "" {
		tag = RcptTag(key, ref, rcpt)
	}
	mac := key.Sign(stampPurpose, []byte(customer+"\x00"+ts+"\x00"+ref+"\x00"+tag))
	v := "c=" + customer + "; t=" + ts + "; m=" + ref
	if tag != "" {
		v += "; r=" + tag
	}
	return v + "; s=" + base64.RawURLEncoding.EncodeToString(mac[:macLen])
}

// RcptTag is the keyed tag of a canonical recipient of the message ref: 64
// bits of HMAC, so the store and the stamp hold no address, and a tag says
// nothing about the same address in another message.
func RcptTag(key secrets.Key, ref, rcpt string) string {
	mac := key.Sign(rcptTagPurpose, []byte(ref+"\x00"+rcpt))
	return hex.EncodeToString(mac[:8])
}

// StampInfo is what a verified X-AUP-Customer stamp says.
type StampInfo struct {
	Customer string
	Issued   time.Time
	// Ref is the message's reference; "" for a version 1 stamp, which
	// binds no message and no recipient.
	Ref string
	// RcptTag is the tag of the message's one recipient; "" when the
	// message had several (their tags are stored under Ref).
	RcptTag string
}

// ParseStamp verifies an X-AUP-Customer value and returns the customer.
func ParseStamp(key secrets.Key, v string) (string, error) {
	si, err := VerifyStamp(key, v)
	return si.Customer, err
}

// VerifyStamp verifies an X-AUP-Customer value (either version) and
// returns what it says.
func VerifyStamp(key secrets.Key, v string) (StampInfo, error) {
	var c, ts, ref, tag, sig string
	var hasRef, hasTag bool
	for _, part := range strings.Split(unfold(v), ";") {
		k, val, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			continue
		}
		switch k {
		case "c":
			c = val
		case "t":
			ts = val
		case "m":
			ref, hasRef = val, true
		case "r":
			tag, hasTag = val, true
		case "s":
			sig = val
		}
	}
	mac, err := base64.RawURLEncoding.DecodeString(sig)
	unix, terr := strconv.ParseInt(ts, 10, 64)
	if c == "" || terr != nil || err != nil || len(mac) != macLen || hasRef && !validRef(ref) || hasTag && !validTag(tag) || hasTag && !hasRef {
		return StampInfo{}, errors.New("malformed " + StampHeader + " header")
	}
	var want []byte
	if hasRef {
		want = key.Sign(stampPurpose, []byte(c+"\x00"+ts+"\x00"+ref+"\x00"+tag))[:macLen]
	} else {
		want = key.Sign(stampV1Purpose, []byte(c+"\x00"+ts))[:macLen]
	}
	if !hmac.Equal(mac, want) {
		return StampInfo{}, errors.New(StampHeader + " signature does not verify")
	}
	return StampInfo{Customer: c, Issued: time.Unix(unix, 0).UTC(), Ref: ref, RcptTag: tag}, nil
}

// validRef reports whether s can be a stamp's message reference: 1 to
// maxRefLen characters of [A-Za-z0-9_-] (it becomes part of store keys).
func validRef(s string) bool {
	if s == "" || len(s) > maxRefLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// validTag reports whether s is a recipient tag: 16 lower-case hex digits.
func validTag(s string) bool {
	if len(s) != 16 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil && strings.ToLower(s) == s
}

// NewStampRef returns a fresh message reference for a stamp: the
// gateway's reference id of the message (so the decision log line is
// found from a complaint) and 60 random bits, so references never repeat.
func NewStampRef(gatewayRef string) string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	r := strings.Map(func(c rune) rune {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			return c
		}
		return -1
	}, gatewayRef)
	if len(r) > 20 {
		r = r[:20]
	}
	return r + "-" + base64.RawURLEncoding.EncodeToString(b[:])[:10]
}

// unfold undoes header folding (RFC 5322 §2.2.3) and trims.
func unfold(v string) string {
	v = strings.ReplaceAll(v, "\r\n", "")
	v = strings.ReplaceAll(v, "\n", "")
	return strings.TrimSpace(v)
}

// FeedbackIDHeader is the field large receivers aggregate complaints by
// (Google's Feedback Loop: "a:b:c:SenderId", at most four fields).
const FeedbackIDHeader = "Feedback-ID"

// feedbackTag is the keyed tag of a customer in the gateway's Feedback-ID:
// it lets complaint attribution tell the gateway's own Feedback-ID from one
// a client wrote (a customer cannot compute another customer's tag).
func feedbackTag(key secrets.Key, customer string) string {
	return hex.EncodeToString(key.Sign("feedback-id", []byte(customer))[:6])
}

// FeedbackID returns the gateway's Feedback-ID value for a customer:
// "[CAMPAIGN:]CUSTOMER:TAG:SENDERID". campaign, when not empty, is the
// customer's own identifier kept from its Feedback-ID (see docs/optout.md).
func FeedbackID(key secrets.Key, campaign, customer, senderID string) string {
	v := customer + ":" + feedbackTag(key, customer) + ":" + senderID
	if campaign != "" {
		v = campaign + ":" + v
	}
	return v
}

// ParseFeedbackID returns the customer of a Feedback-ID the gateway wrote:
// the last field is senderID and the tag before it verifies for the
// customer before that. Anything else names no customer.
func ParseFeedbackID(key secrets.Key, v, senderID string) (string, bool) {
	f := strings.Split(strings.ReplaceAll(unfold(v), " ", ""), ":")
	n := len(f)
	if n < 3 || n > 4 || senderID == "" || f[n-1] != senderID || f[n-3] == "" {
		return "", false
	}
	want := feedbackTag(key, f[n-3])
	if !hmac.Equal([]byte(f[n-2]), []byte(want)) {
		return "", false
	}
	return f[n-3], true
}
