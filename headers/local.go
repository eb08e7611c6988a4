package headers

import (
	"regexp"
	"strings"

	"github.com/aupguard/aupguard/internal/engine/policy"
)

// standaloneSMTPReceived matches the trace field Postfix's smtpd writes in
// stand-alone mode ("sendmail -bs", which PHP libraries such as Symfony
// Mailer use by default): the message then goes through postdrop and
// pickup like any locally submitted mail, with that field on top of the
// header section the milter sees. Group 1 is the "by" host.
var standaloneSMTPReceived = regexp.MustCompile(`^from [^\s()]+ \(localhost \[127\.0\.0\.1\]\) by ([^\s()]+) \(Postfix\) with E?SMTP id [0-9A-Za-z]+( for <[^<>\s]*>)?;`)

// localTrusted reports whether the topmost field of a locally submitted
// message is the trace field the provider's own Postfix wrote for a
// "sendmail -bs" submission: it records a hop from localhost on the
// provider's host, which is true of every local message, so it is not a
// forgery (RFC 5321 §4.4: each hop adds its own). Pickup's own Received:
// with the submitting uid is placed above it and is not shown to milters.
func (c *Forgery) localTrusted(t *policy.Txn) bool {
	if t.Conn == nil || !t.Conn.Local || len(t.Headers) == 0 {
		return false
	}
	h := t.Headers[0]
	if !strings.EqualFold(strings.TrimRight(h.Name, " \t"), "Received") {
		return false
	}
	v := strings.Join(strings.Fields(unfold(h.Value)), " ")
	m := standaloneSMTPReceived.FindStringSubmatch(v)
	return m != nil && c.s.Provider.OwnsHost(m[1])
}
