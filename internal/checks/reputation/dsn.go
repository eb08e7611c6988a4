package reputation

import (
	"strconv"
	"strings"
)

// Class is what one delivery result means for the sender's reputation.
type Class string

// The classes of delivery results.
const (
	// Sent: the receiver accepted the message (status=sent).
	Sent Class = "sent"
	// HardBounce: the recipient does not exist (RFC 3463 X.1.1, X.1.2,
	// X.1.3, X.1.6, X.1.10, X.2.1, and Postfix's 5.4.4 for a domain with
	// no host): the mark of a bought or stale list.
	HardBounce Class = "hard"
	// PolicyBounce: the receiver refused the message for policy or
	// content (RFC 3463 X.7.x: reputation, authentication, spam).
	PolicyBounce Class = "policy"
	// OtherBounce: any other permanent failure (mailbox full, message too
	// big, protocol errors...).
	OtherBounce Class = "other"
	// Deferred: a temporary failure (status=deferred); Postfix retries.
	Deferred Class = "deferred"
)

// Classes lists every class, in report order.
var Classes = []Class{Sent, HardBounce, PolicyBounce, OtherBounce, Deferred}

// Final reports whether the class is a final result (counted in the rate's
// denominator).
func (c Class) Final() bool { return c != Deferred && c != "" }

// Classify turns Postfix's status and dsn fields into a Class; ok is false
// for results that say nothing about the recipient (address verification
// probes: status=deliverable or undeliverable, and unknown statuses).
//
// RFC 3463 §3.1: the class digit (2 success, 4 persistent transient, 5
// permanent) says whether it is final; §3.2-§3.8 the subject and detail.
// The status field wins over a disagreeing dsn class (Postfix may bounce
// with a 4.x.x code when a message expires in the queue: that is a final
// failure, but not one that proves the recipient does not exist).
func Classify(status, dsn string) (Class, bool) {
	class, subject, detail, valid := parseDSN(dsn)
	switch status {
	case "sent":
		return Sent, true
	case "deferred":
		return Deferred, true
	case "bounced", "expired":
	default:
		return "", false
	}
	if !valid || class != 5 {
		return OtherBounce, true
	}
	switch subject {
	case 1:
		// X.1.1 bad destination mailbox, X.1.2 bad destination system,
		// X.1.3 bad mailbox syntax, X.1.6 mailbox moved (no forwarding),
		// X.1.10 (RFC 7505 §4.2) recipient domain has a null MX.
		switch detail {
		case 1, 2, 3, 6, 10:
			return HardBounce, true
		}
	case 2:
		// X.2.1 mailbox disabled, not accepting messages.
		if detail == 1 {
			return HardBounce, true
		}
	case 4:
		// X.4.4 unable to route: Postfix uses 5.4.4 for a domain that does
		// not exist (host or domain name not found, NXDOMAIN).
		if detail == 4 {
			return HardBounce, true
		}
	case 7:
		// X.7.x security or policy status.
		return PolicyBounce, true
	}
	return OtherBounce, true
}

// parseDSN splits "class.subject.detail" (RFC 3463 §2: class 2, 4 or 5;
// subject 0-999; detail 0-999).
func parseDSN(s string) (class, subject, detail int, ok bool) {
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return 0, 0, 0, false
	}
	var n [3]int
	for i, p := range parts {
		if p == "" || len(p) > 3 || (i == 0 && len(p) != 1) {
			return 0, 0, 0, false
		}
		v, err := strconv.Atoi(p)
		if err != nil || v < 0 || p[0] == '+' {
			return 0, 0, 0, false
		}
		n[i] = v
	}
	if n[0] != 2 && n[0] != 4 && n[0] != 5 {
		return 0, 0, 0, false
	}
	return n[0], n[1], n[2], true
}
