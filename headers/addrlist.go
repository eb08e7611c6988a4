package headers

import (
	"errors"
	"fmt"
	"strings"
)

// Mailbox is one mailbox of an address header (RFC 5322 §3.4).
type Mailbox struct {
	// Name is the display name, RFC 2047 encoded-words decoded (also those
	// inside quoted strings, as many MUAs display them), unfolded.
	Name string
	// RawName is the display name as written, quotes removed, not decoded.
	RawName string
	// Comments are the texts of the comments around the mailbox
	// (RFC 5322 §3.2.2), which some MUAs display like a name.
	Comments []string
	// Local is the local part, in its canonical written form (quoted when
	// it is not a dot-atom).
	Local string
	// Domain is the domain as written: a dot-atom or a [domain-literal].
	// It is not normalised.
	Domain string
	// Group is the name of the group the mailbox belongs to, if any.
	Group string
}

// Address returns local@domain.
func (m Mailbox) Address() string { return m.Local + "@" + m.Domain }

// ErrSyntax is wrapped by every address-list parse error.
var ErrSyntax = errors.New("address syntax")

func syntaxErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrSyntax, fmt.Sprintf(format, args...))
}

// ParseAddressList parses an address-list (RFC 5322 §3.4): mailboxes and
// groups, including the obsolete forms of §4.4 (empty list elements,
// routes, phrases with dots, CFWS between local-part words). It never
// panics and runs in time linear in len(s).
func ParseAddressList(s string) ([]Mailbox, error) {
	return parseList(s, true)
}

// ParseMailboxList parses a mailbox-list, as From: holds (RFC 5322
// §3.6.2): like an address-list but without groups.
func ParseMailboxList(s string) ([]Mailbox, error) {
	return parseList(s, false)
}

// ParseMailbox parses exactly one mailbox, as Sender: holds (RFC 5322 §3.6.2).
func ParseMailbox(s string) (Mailbox, error) {
	ms, err := parseList(s, false)
	if err != nil {
		return Mailbox{}, err
	}
	if len(ms) != 1 {
		return Mailbox{}, syntaxErr("want exactly one mailbox, got %d", len(ms))
	}
	return ms[0], nil
}

// token kinds.
const (
	tAtom    = iota // atext run (RFC 5322 §3.2.3; UTF-8 allowed, RFC 6532 §3.2)
	tQuoted         // quoted-string, content unescaped
	tLiteral        // domain-literal, brackets included
	tSpecial        // one of < > : ; @ , .
)

type token struct {
	kind int
	text string
	// space is set when white space or a comment preceded the token.
	space bool
}

// lexer splits a header value into tokens, collecting comments aside.
type lexer struct {
	toks     []token
	comments []int // index of the token a comment precedes
	ctext    []string
}

func isWSP(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

func isSpecial(c byte) bool {
	return strings.IndexByte("()<>[]:;@\\,.\"", c) >= 0
}

func lex(s string) (*lexer, error) {
	// Room for the tokens of a usual "Name <local@example.com>" at once.
	lx := &lexer{toks: make([]token, 0, 16)}
	space := false
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case isWSP(c):
			space = true
			i++
		case c == '(':
			// Comments nest (RFC 5322 §3.2.2); a counter suffices.
			depth, j := 0, i
			var b strings.Builder
			for ; j < len(s); j++ {
				ch := s[j]
				if ch == '\\' && j+1 < len(s) {
					j++
					b.WriteByte(s[j])
					continue
				}
				if ch == '(' {
					depth++
					if depth == 1 {
						continue
					}
				}
				if ch == ')' {
					depth--
					if depth == 0 {
						break
					}
				}
				b.WriteByte(ch)
			}
			if depth != 0 {
				return nil, syntaxErr("unterminated comment")
			}
			lx.comments = append(lx.comments, len(lx.toks))
			lx.ctext = append(lx.ctext, unfold(b.String()))
			space = true
			i = j + 1
		case c == '"':
			var b strings.Builder
			j := i + 1
			closed := false
			for ; j < len(s); j++ {
				ch := s[j]
				if ch == '\\' && j+1 < len(s) {
					j++
					if s[j] == '\r' || s[j] == '\n' {
						// RFC 5322 §4.1 obs-qp allows a quoted CR or LF; in an
						// address it only serves to hide what the address is.
						return nil, syntaxErr("quoted line break in quoted string")
					}
					b.WriteByte(s[j])
					continue
				}
				if ch == '"' {
					closed = true
					break
				}
				if ch == '\r' || ch == '\n' {
					continue // folding inside a quoted string (RFC 5322 §3.2.4)
				}
				b.WriteByte(ch)
			}
			if !closed {
				return nil, syntaxErr("unterminated quoted string")
			}
			lx.toks = append(lx.toks, token{kind: tQuoted, text: b.String(), space: space})
			space = false
			i = j + 1
		case c == '[':
			j := strings.IndexByte(s[i:], ']')
			if j < 0 {
				return nil, syntaxErr("unterminated domain literal")
			}
			lit := s[i : i+j+1]
			if strings.ContainsAny(lit[1:len(lit)-1], "[\\") {
				return nil, syntaxErr("bad domain literal %q", lit)
			}
			lx.toks = append(lx.toks, token{kind: tLiteral, text: strings.Join(strings.Fields(lit), ""), space: space})
			space = false
			i += j + 1
		case c == ')' || c == ']' || c == '\\':
			return nil, syntaxErr("unexpected %q", c)
		case isSpecial(c):
			lx.toks = append(lx.toks, token{kind: tSpecial, text: s[i : i+1], space: space})
			space = false
			i++
		default:
			j := i
			for j < len(s) && !isWSP(s[j]) && !isSpecial(s[j]) {
				j++
			}
			lx.toks = append(lx.toks, token{kind: tAtom, text: s[i:j], space: space})
			space = false
			i = j
		}
	}
	return lx, nil
}

// parser walks the tokens of one list.
type parser struct {
	lx  *lexer
	pos int
	// nextComment is the index into lx.comments of the first comment not
	// yet given to a mailbox.
	nextComment int
}

func (p *parser) peek() (token, bool) {
	if p.pos >= len(p.lx.toks) {
		return token{}, false
	}
	return p.lx.toks[p.pos], true
}

func (p *parser) isSpecial(c string) bool {
	t, ok := p.peek()
	return ok && t.kind == tSpecial && t.text == c
}

// takeComments returns the comments that precede token index upto.
func (p *parser) takeComments(upto int) []string {
	var out []string
	for p.nextComment < len(p.lx.comments) && p.lx.comments[p.nextComment] <= upto {
		out = append(out, p.lx.ctext[p.nextComment])
		p.nextComment++
	}
	return out
}

func parseList(s string, groups bool) ([]Mailbox, error) {
	lx, err := lex(s)
	if err != nil {
		return nil, err
	}
	p := &parser{lx: lx}
	var out []Mailbox
	for {
		// Empty list elements are obsolete but allowed (RFC 5322 §4.4).
		for p.isSpecial(",") {
			p.pos++
		}
		if _, ok := p.peek(); !ok {
			break
		}
		ms, err := p.address(groups)
		if err != nil {
			return nil, err
		}
		out = append(out, ms...)
		if _, ok := p.peek(); !ok {
			break
		}
		if !p.isSpecial(",") {
			t, _ := p.peek()
			return nil, syntaxErr("unexpected %q after address", t.text)
		}
	}
	// Trailing comments belong to the last mailbox.
	if rest := p.takeComments(len(lx.toks)); len(rest) > 0 && len(out) > 0 {
		out[len(out)-1].Comments = append(out[len(out)-1].Comments, rest...)
	}
	if len(out) == 0 && !groups {
		return nil, syntaxErr("no mailbox")
	}
	return out, nil
}

// phrase reads words (atoms, quoted strings, and the dots of RFC 5322
// §4.1 obs-phrase) and returns the display name, raw and decoded.
func (p *parser) phrase() (raw string, words int) {
	// A phrase of one word is that word's text, without a copy.
	var first string
	var b strings.Builder
	for {
		t, ok := p.peek()
		if !ok {
			break
		}
		if t.kind != tAtom && t.kind != tQuoted && !(t.kind == tSpecial && t.text == "." && words > 0) {
			break
		}
		switch words {
		case 0:
			first = t.text
		case 1:
			b.Grow(len(first) + 1 + len(t.text) + 32)
			b.WriteString(first)
			fallthrough
		default:
			if t.space && b.Len() > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(t.text)
		}
		words++
		p.pos++
	}
	if words <= 1 {
		return first, words
	}
	return b.String(), words
}

// address parses one mailbox or group (RFC 5322 §3.4).
func (p *parser) address(groups bool) ([]Mailbox, error) {
	start := p.pos
	raw, n := p.phrase()
	t, ok := p.peek()
	switch {
	case ok && t.kind == tSpecial && t.text == "<":
		m, err := p.angleAddr()
		if err != nil {
			return nil, err
		}
		m.RawName = raw
		m.Name = DecodePhrase(raw)
		m.Comments = p.takeComments(p.pos)
		return []Mailbox{m}, nil
	case ok && t.kind == tSpecial && t.text == ":":
		if !groups {
			return nil, syntaxErr("group syntax not allowed here")
		}
		if n == 0 {
			return nil, syntaxErr("group without a name")
		}
		p.pos++
		return p.group(DecodePhrase(raw))
	default:
		// addr-spec: rewind and parse it as local-part "@" domain.
		p.pos = start
		m, err := p.addrSpec()
		if err != nil {
			return nil, err
		}
		m.Comments = p.takeComments(p.pos)
		return []Mailbox{m}, nil
	}
}

func (p *parser) group(name string) ([]Mailbox, error) {
	var out []Mailbox
	for {
		for p.isSpecial(",") {
			p.pos++
		}
		t, ok := p.peek()
		if !ok {
			// A missing ";" is tolerated: the group ends with the field.
			return out, nil
		}
		if t.kind == tSpecial && t.text == ";" {
			p.pos++
			return out, nil
		}
		ms, err := p.address(false)
		if err != nil {
			return nil, err
		}
		for i := range ms {
			ms[i].Group = name
		}
		out = append(out, ms...)
		if !p.isSpecial(",") && !p.isSpecial(";") {
			if _, ok := p.peek(); ok {
				t, _ := p.peek()
				return nil, syntaxErr("unexpected %q in group", t.text)
			}
		}
	}
}

// angleAddr parses "<" [obs-route] addr-spec ">" (RFC 5322 §3.4, §4.4).
func (p *parser) angleAddr() (Mailbox, error) {
	p.pos++ // "<"
	if p.isSpecial("@") {
		// obs-route: "@" domain *("," ["@" domain]) ":"; the route is dropped.
		for !p.isSpecial(":") {
			t, ok := p.peek()
			if !ok || (t.kind == tSpecial && t.text == ">") {
				return Mailbox{}, syntaxErr("bad route in angle address")
			}
			p.pos++
		}
		p.pos++
	}
	if p.isSpecial(">") {
		return Mailbox{}, syntaxErr("empty angle address")
	}
	m, err := p.addrSpec()
	if err != nil {
		return Mailbox{}, err
	}
	if !p.isSpecial(">") {
		return Mailbox{}, syntaxErr("angle address not closed")
	}
	p.pos++
	return m, nil
}

// addrSpec parses local-part "@" domain (RFC 5322 §3.4.1).
func (p *parser) addrSpec() (Mailbox, error) {
	var local strings.Builder
	words := 0
	for {
		t, ok := p.peek()
		if !ok {
			return Mailbox{}, syntaxErr("address has no domain")
		}
		if t.kind == tAtom || t.kind == tQuoted {
			if words > 0 {
				return Mailbox{}, syntaxErr("words in local part must be separated by dots")
			}
			if t.kind == tQuoted {
				local.WriteString(quote(t.text))
			} else {
				local.WriteString(t.text)
			}
			words++
			p.pos++
			continue
		}
		if t.kind == tSpecial && t.text == "." && words > 0 {
			local.WriteByte('.')
			words = 0
			p.pos++
			continue
		}
		break
	}
	if local.Len() == 0 || words == 0 {
		return Mailbox{}, syntaxErr("empty or dot-ended local part")
	}
	if !p.isSpecial("@") {
		return Mailbox{}, syntaxErr("address has no domain")
	}
	p.pos++
	domain, err := p.domain()
	if err != nil {
		return Mailbox{}, err
	}
	return Mailbox{Local: canonicalLocal(local.String()), Domain: domain}, nil
}

// domain parses a dot-atom or a domain-literal (RFC 5322 §3.4.1).
func (p *parser) domain() (string, error) {
	t, ok := p.peek()
	if !ok {
		return "", syntaxErr("empty domain")
	}
	if t.kind == tLiteral {
		p.pos++
		return t.text, nil
	}
	var b strings.Builder
	b.Grow(64)
	for {
		t, ok := p.peek()
		if !ok || t.kind != tAtom {
			return "", syntaxErr("bad domain")
		}
		b.WriteString(t.text)
		p.pos++
		if !p.isSpecial(".") {
			break
		}
		// A trailing dot ends the domain (a root-qualified name).
		p.pos++
		if nt, ok := p.peek(); !ok || nt.kind != tAtom {
			b.WriteByte('.')
			break
		}
		b.WriteByte('.')
	}
	return b.String(), nil
}

// canonicalLocal turns an obs-local-part made of quoted and atom words
// into one quoted string when it is not a plain dot-atom.
func canonicalLocal(s string) string {
	if !strings.Contains(s, "\"") {
		return s
	}
	if strings.HasPrefix(s, "\"") && strings.HasSuffix(s, "\"") && strings.Count(s, "\"") == 2 {
		return s
	}
	// Mixed words such as a."b c": unquote each part and requote the whole.
	var b strings.Builder
	lx, err := lex(s)
	if err != nil {
		return s
	}
	for _, t := range lx.toks {
		b.WriteString(t.text)
	}
	return quote(b.String())
}

// quote returns s as a quoted-string unless it is a dot-atom.
func quote(s string) string {
	if isDotAtom(s) {
		return s
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('"')
	return b.String()
}

func isDotAtom(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '.' && (isWSP(c) || isSpecial(c) || c < 0x20 || c == 0x7f) {
			return false
		}
	}
	return true
}

// unfold removes folding (RFC 5322 §2.2.3): each CRLF or LF followed by
// white space becomes that white space.
func unfold(s string) string {
	if !strings.ContainsAny(s, "\r\n") {
		return s
	}
	s = strings.ReplaceAll(s, "\r\n", "")
	return strings.ReplaceAll(s, "\n", "")
}
