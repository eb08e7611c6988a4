package headers

import (
	"fmt"
	"io"
	"mime"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/encoding/htmlindex"
	"golang.org/x/text/unicode/norm"
)

// maxDecoded bounds what one encoded-word may decode to, so that a hostile
// header cannot make the decoder allocate without end.
const maxDecoded = 64 * 1024

// wordDecoder decodes RFC 2047 encoded-words in every charset the WHATWG
// encoding index knows (the ones MUAs actually use), not only UTF-8,
// ISO-8859-1 and US-ASCII.
var wordDecoder = &mime.WordDecoder{CharsetReader: charsetReader}

func charsetReader(charset string, input io.Reader) (io.Reader, error) {
	enc, err := htmlindex.Get(charset)
	if err != nil {
		return nil, fmt.Errorf("unknown charset %q", charset)
	}
	return io.LimitReader(enc.NewDecoder().Reader(input), maxDecoded), nil
}

// DecodePhrase decodes the RFC 2047 encoded-words of a display name or
// unstructured text (RFC 2047 §6.2: white space between adjacent
// encoded-words is dropped) and unfolds it. Undecodable words are kept as
// written, as a MUA would show them.
func DecodePhrase(s string) string {
	s = unfold(s)
	if !strings.Contains(s, "=?") {
		return s
	}
	d, err := wordDecoder.DecodeHeader(s)
	if err != nil {
		return s
	}
	return d
}

// EncodedWord is one RFC 2047 encoded-word found in a header value.
type EncodedWord struct {
	Raw     string
	Decoded string
	// OK is false when the word could not be decoded (unknown charset,
	// bad encoding); Decoded is then empty.
	OK bool
}

// EncodedWords finds the encoded-words of a header value
// ("=?charset?Q|B?text?=", RFC 2047 §2) and decodes each on its own.
func EncodedWords(s string) []EncodedWord {
	var out []EncodedWord
	for {
		i := strings.Index(s, "=?")
		if i < 0 {
			return out
		}
		s = s[i:]
		end := encodedWordEnd(s)
		if end < 0 {
			s = s[2:]
			continue
		}
		raw := s[:end]
		d, err := wordDecoder.Decode(whatwgLabel(raw))
		out = append(out, EncodedWord{Raw: raw, Decoded: d, OK: err == nil})
		s = s[end:]
	}
}

// whatwgLabel relabels an ISO-8859-1 encoded-word as windows-1252, as the
// WHATWG Encoding Standard (§4.2) has every browser and most MUAs do: mail
// labelled ISO-8859-1 is very often windows-1252, where 0x80-0x9F are
// printable (€, …) rather than C1 controls.
func whatwgLabel(word string) string {
	const latin1 = "=?iso-8859-1?"
	if len(word) > len(latin1) && strings.EqualFold(word[:len(latin1)], latin1) {
		return "=?windows-1252?" + word[len(latin1):]
	}
	return word
}

// encodedWordEnd returns the length of the encoded-word at the start of s
// (which starts with "=?"), or -1: "=?" charset "?" encoding "?" text "?=",
// with no white space inside (RFC 2047 §2).
func encodedWordEnd(s string) int {
	q := 0
	for i := 2; i < len(s); i++ {
		c := s[i]
		if c == ' ' || c == '\t' || c == '\r' || c == '\n' {
			return -1
		}
		if c == '?' {
			q++
			if q == 3 {
				if i+1 < len(s) && s[i+1] == '=' {
					return i + 2
				}
				return -1
			}
		}
	}
	return -1
}

// Normalize prepares text for the look-alike search: Unicode NFKC
// (fullwidth "＠" and "﹫" become "@", fullwidth letters become ASCII,
// RFC 8264 §7 uses NFKC for the same purpose), and format characters such
// as zero-width spaces and bidi controls removed, since they are
// invisible to the reader.
func Normalize(s string) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	s = norm.NFKC.String(s)
	return strings.Map(func(r rune) rune {
		if unicode.Is(unicode.Cf, r) {
			return -1
		}
		return r
	}, s)
}

// AddressLike finds everything in text that looks like a mail address
// once normalised: "@" with a name before it and a dotted domain after it.
// It returns the domains as written (after normalisation), in order.
func AddressLike(text string) []string {
	s := Normalize(text)
	var out []string
	for i := 0; i < len(s); {
		at := strings.IndexByte(s[i:], '@')
		if at < 0 {
			break
		}
		at += i
		i = at + 1
		if at == 0 || !localRune(lastRune(s[:at])) {
			continue
		}
		d := domainRun(s[at+1:])
		if strings.Contains(strings.Trim(d, "."), ".") {
			out = append(out, strings.Trim(d, "."))
		}
	}
	return out
}

func lastRune(s string) rune {
	r, _ := utf8.DecodeLastRuneInString(s)
	return r
}

// localRune: a character that may end a local part as a reader sees it.
func localRune(r rune) bool {
	return unicode.IsLetter(r) || unicode.IsDigit(r) || strings.ContainsRune("!#$%&'*+-/=?^_`{|}~.\"", r)
}

// domainRun returns the longest prefix of s made of letters, digits,
// hyphens and dots: what a reader takes for the domain.
func domainRun(s string) string {
	for i, r := range s {
		if !(unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.Is(unicode.Mn, r) || r == '-' || r == '.') {
			return s[:i]
		}
	}
	return s
}

// HasControl reports whether s holds a control character a reader cannot
// see or that changes how the text is shown: C0 and C1 controls (TAB
// excepted), DEL, and the bidi embedding, override and isolate controls
// (Unicode UAX #9), which can reorder what is displayed.
func HasControl(s string) (rune, bool) {
	for _, r := range s {
		switch {
		case r == '\t':
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f):
			return r, true
		case r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069:
			return r, true
		}
	}
	return 0, false
}
