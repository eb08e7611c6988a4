package reputation

import (
	"strings"
)

// Delivery is one delivery result as a Postfix delivery agent (smtp, lmtp,
// local, virtual, pipe, error, retry...) logs it:
//
//	Nov 29 23:50:01 mta1 postfix/smtp[4242]: 4F3A21C0D2: to=<bob@example.org>,
//	  relay=mx.example.org[192.0.2.25]:25, delay=0.4, delays=0.1/0/0.2/0.1,
//	  dsn=5.1.1, status=bounced (host mx.example.org[192.0.2.25] said: 550
//	  5.1.1 <bob@example.org>: Recipient address rejected (in reply to RCPT TO command))
//
// (one line), or the same without the syslog header (`journalctl -o cat`).
type Delivery struct {
	// Program is the logging program, syslog_name and service
	// ("postfix/smtp", "postfix-ip2/smtp"); "" without a syslog header.
	Program string
	QueueID string
	// To is the recipient as logged (never stored in plain text).
	To     string
	Relay  string
	DSN    string
	Status string
	// Text is the explanation in parentheses (the receiver's reply).
	Text string
}

// Class classifies the result; ok is false for a result that says nothing
// about the recipient.
func (d *Delivery) Class() (Class, bool) { return Classify(d.Status, d.DSN) }

// maxLine bounds the lines the parser looks at; Postfix's own lines are
// far shorter (line_length_limit is 2048 by default, recipients 998).
const maxLine = 16 << 10

// AddressFormat is how Postfix writes addresses in its log: its
// info_log_address_format setting.
type AddressFormat string

// The address formats of Postfix's log.
const (
	// External (Postfix ≥ 3.5, the default): a local part with spaces or
	// other special characters is quoted, "name with spaces"@example.com,
	// with '"' and '\' escaped; the end of the address is known exactly.
	External AddressFormat = "external"
	// Internal (info_log_address_format = internal, and every Postfix
	// before 3.5): the local part is logged unquoted, name with
	// spaces@example.com, so it may hold anything, "<", ">" and ", relay="
	// included.
	Internal AddressFormat = "internal"
)

// ParseLine parses one log line written with the external address format
// (ParseLineFormat).
func ParseLine(line string) (Delivery, bool) { return ParseLineFormat(line, External) }

// ParseLineFormat parses one log line whose addresses are written in
// format. It returns false for every line that is not a delivery result.
//
// Parts of a delivery line come from others: the recipient address from
// the customer, the reply text from the receiver, and other log lines
// (header_checks WARN, for instance) quote message headers. So the parser
// anchors on what only Postfix writes: the first "PROGRAM[PID]: " of the
// line, preceded by nothing but the syslog timestamp and host (no ": "),
// or a queue id at the very start of a line without a syslog header; then
// "QUEUEID: to=<".
//
// In the external format the address is read quote-aware (RFC 5321 §4.1.2:
// a quoted local part may hold '>' and ", status="), which finds its end
// exactly. In the internal format nothing marks the end of an unquoted
// local part: every "<address>, relay=" split of the line after which the
// fields parse is a reading of it, and when a hostile address makes more
// than one, the most severe result wins (a hard bounce over a policy
// bounce over another bounce over a deferral over a delivery). Whoever
// writes the address (the customer, whose own message it is) can so only
// make a result worse for themself, never hide a bounce; whoever writes
// the reply text (the receiver) could bounce the message anyway.
func ParseLineFormat(line string, format AddressFormat) (Delivery, bool) {
	var d Delivery
	if len(line) > maxLine {
		return d, false
	}
	line = strings.TrimRight(line, "\r\n")
	rest, ok := "", false
	if qid, after, found := strings.Cut(line, ": "); found && validQueueID(qid) {
		d.QueueID, rest, ok = qid, after, true
	} else if prog, after, found := syslogProgram(line); found {
		d.Program = prog
		qid, after2, found := strings.Cut(after, ": ")
		if !found || !validQueueID(qid) {
			return d, false
		}
		d.QueueID, rest, ok = qid, after2, true
	}
	if !ok || !strings.HasPrefix(rest, "to=<") {
		return d, false
	}
	rest = rest[len("to="):]
	if format == Internal {
		return parseInternal(d, rest)
	}
	addr, rest, ok := angleAddr(rest)
	if !ok {
		return d, false
	}
	d.To = addr
	return parseFields(d, rest, false)
}

// parseInternal reads "<address>, ..." with an unquoted address: each
// ">, orig_to=<" or ">, relay=" is a possible end of it; the most severe of
// the readings that parse wins.
func parseInternal(d Delivery, s string) (Delivery, bool) {
	var (
		best     Delivery
		bestRank = -1
	)
	// Every split is tried (a cap would let a hostile address hide the
	// real one behind enough false ones); each costs at most maxFields
	// bounded fields.
	for i := 1; i < len(s); i++ {
		if s[i] != '>' || !(strings.HasPrefix(s[i+1:], ", relay=") || strings.HasPrefix(s[i+1:], ", orig_to=<")) {
			continue
		}
		c := d
		c.To = s[1:i]
		c, ok := parseFields(c, s[i+1:], true)
		if !ok {
			continue
		}
		class, ok := c.Class()
		if !ok {
			continue
		}
		if r := severity(class); r > bestRank {
			best, bestRank = c, r
		}
	}
	return best, bestRank >= 0
}

// severity orders the classes for the internal format's ambiguous lines.
func severity(c Class) int {
	switch c {
	case HardBounce:
		return 4
	case PolicyBounce:
		return 3
	case OtherBounce:
		return 2
	case Deferred:
		return 1
	}
	return 0
}

// maxValue bounds a field value (relay=host[addr]:port is the longest);
// maxFields the fields before status= (Postfix writes at most seven:
// orig_to, relay, conn_use, delay, delays, dsn and status).
const (
	maxValue  = 512
	maxFields = 12
)

// parseFields reads ", key=value" fields up to status=WORD (TEXT). internal:
// orig_to's address is unquoted (it ends at the first ">, " followed by a
// field).
func parseFields(d Delivery, rest string, internal bool) (Delivery, bool) {
	for n := 0; ; n++ {
		if n == maxFields || !strings.HasPrefix(rest, ", ") {
			return d, false
		}
		rest = rest[2:]
		key, val, found := strings.Cut(rest, "=")
		if !found || !validKey(key) {
			return d, false
		}
		rest = val
		if key == "orig_to" {
			var ok bool
			if internal {
				rest, ok = skipInternalAddr(rest)
			} else {
				_, rest, ok = angleAddr(rest)
			}
			if !ok {
				return d, false
			}
			continue
		}
		if key == "status" {
			word, text, _ := strings.Cut(rest, " ")
			d.Status = word
			if strings.HasPrefix(text, "(") && strings.HasSuffix(text, ")") {
				text = text[1 : len(text)-1]
			}
			d.Text = text
			break
		}
		i := strings.Index(rest[:min(len(rest), maxValue+2)], ", ")
		if i < 0 {
			return d, false
		}
		v := rest[:i]
		rest = rest[i:]
		switch key {
		case "relay":
			d.Relay = v
		case "dsn":
			d.DSN = v
		}
	}
	if d.Status == "" || d.DSN == "" {
		return d, false
	}
	return d, true
}

// skipInternalAddr skips an unquoted "<address>" followed by ", relay=".
func skipInternalAddr(s string) (string, bool) {
	if !strings.HasPrefix(s, "<") {
		return "", false
	}
	i := strings.Index(s[:min(len(s), maxLine)], ">, relay=")
	if i < 0 {
		return "", false
	}
	return s[i+1:], true
}

// syslogProgram finds the first "PROGRAM[PID]: " of a syslog line (RFC
// 3164 TAG, or the APP-NAME and PROCID of RFC 5424 as rsyslog renders them)
// and returns the program and what follows. Before it there may only be
// the timestamp and the host: no ": ".
func syslogProgram(line string) (prog, after string, ok bool) {
	i := strings.Index(line, "]: ")
	if i < 0 {
		return "", "", false
	}
	head := line[:i]
	if strings.Contains(head, ": ") {
		return "", "", false
	}
	j := strings.LastIndexByte(head, '[')
	if j < 0 {
		return "", "", false
	}
	pid := head[j+1:]
	if pid == "" || strings.Trim(pid, "0123456789") != "" {
		return "", "", false
	}
	start := strings.LastIndexAny(head[:j], " \t") + 1
	prog = head[start:j]
	if prog == "" || strings.ContainsAny(prog, "[]<>") {
		return "", "", false
	}
	return prog, line[i+3:], true
}

// validQueueID accepts Postfix's short (hexadecimal) and long
// (enable_long_queue_ids: base-52 time and inode, 'z' separated) ids.
func validQueueID(s string) bool {
	if len(s) < 5 || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z') {
			return false
		}
	}
	return true
}

func validKey(k string) bool {
	if k == "" || len(k) > 16 {
		return false
	}
	for i := 0; i < len(k); i++ {
		if c := k[i]; !(c >= 'a' && c <= 'z' || c == '_') {
			return false
		}
	}
	return true
}

// angleAddr reads "<address>" at the start of s, honouring a quoted local
// part with backslash escapes, and returns the address and what follows.
func angleAddr(s string) (addr, rest string, ok bool) {
	if !strings.HasPrefix(s, "<") {
		return "", "", false
	}
	inQuote, esc := false, false
	for i := 1; i < len(s); i++ {
		c := s[i]
		switch {
		case esc:
			esc = false
		case inQuote && c == '\\':
			esc = true
		case c == '"':
			inQuote = !inQuote
		case !inQuote && c == '>':
			return s[1:i], s[i+1:], true
		}
	}
	return "", "", false
}
