package links

import (
	"net/netip"
	"strconv"
	"strings"

	"golang.org/x/net/idna"
	"golang.org/x/net/publicsuffix"
)

// idnaProfile maps a host name as a browser's URL parser does (UTS #46,
// non-transitional, RFC 5891 Punycode), without rejecting the underscores
// and other characters real host names carry.
var idnaProfile = idna.New(
	idna.MapForLookup(),
	idna.Transitional(false),
	idna.StrictDomainName(false),
	idna.BidiRule(),
)

// Host is one host a message links to, reduced for a blocklist lookup.
type Host struct {
	// Name is the registrable domain (public suffix + one label, ASCII,
	// lower case), or the address for an IP literal (IP.String()).
	Name string
	// IP is the address of an IP-literal URL; the zero Addr for a name.
	IP netip.Addr
	// URL is the first URL (at most 200 bytes of it) the host was seen in,
	// for the log and the decision record.
	URL string
}

// IsIP reports whether h came from an IP-literal URL.
func (h Host) IsIP() bool { return h.IP.IsValid() }

// reduced is a host as a URL names it, brought to what is looked up.
type reduced struct {
	name string     // registrable domain, or "" for an IP
	ip   netip.Addr // IP literal
	full string     // full ASCII host name (for the own-domain test)
}

// Reduce brings a URL's host (as url.URL.Hostname returns it) to what the
// blocklists are asked about: IP literals (dotted, bracketed IPv6, and the
// decimal, octal and hex IPv4 forms browsers accept, e.g. 3221225473 or
// 0xC0.0250.1) become the address; names are mapped to ASCII (IDNA),
// lower-cased, stripped of their trailing dot and reduced to the
// registrable domain with the public suffix list. ok is false for what is
// no public host: malformed names, a bare public suffix, single labels, and
// addresses that are not globally routable (loopback, private, link-local,
// unspecified, multicast).
func Reduce(host string) (name string, ip netip.Addr, ok bool) {
	r, ok := reduce(host)
	if !ok {
		return "", netip.Addr{}, false
	}
	if r.ip.IsValid() {
		return r.ip.String(), r.ip, true
	}
	return r.name, netip.Addr{}, true
}

func reduce(host string) (reduced, bool) {
	if host == "" || len(host) > 1024 {
		return reduced{}, false
	}
	if i := strings.IndexByte(host, '%'); i >= 0 && strings.Contains(host, ":") {
		host = host[:i] // an IPv6 zone
	}
	if strings.Contains(host, ":") || endsInNumber(host) && !strings.ContainsAny(host, "xX") {
		if a, err := netip.ParseAddr(host); err == nil {
			return ipHost(a)
		}
	}
	ascii, err := idnaProfile.ToASCII(host)
	if err != nil {
		return reduced{}, false
	}
	ascii = strings.TrimSuffix(strings.ToLower(ascii), ".")
	if strings.Contains(ascii, "xn--") {
		// ToASCII encodes some labels it would refuse to decode (U+FFFD,
		// what invalid UTF-8 in a link becomes, is disallowed): such a
		// name is none a resolver would look up, and what is kept must
		// reduce to itself.
		if again, err := idnaProfile.ToASCII(ascii); err != nil || again != ascii {
			return reduced{}, false
		}
	}
	if endsInNumber(ascii) {
		a, ok := parseIPv4(ascii)
		if !ok {
			return reduced{}, false
		}
		return ipHost(a)
	}
	if !validName(ascii) {
		return reduced{}, false
	}
	reg, err := publicsuffix.EffectiveTLDPlusOne(ascii)
	if err != nil {
		return reduced{}, false
	}
	return reduced{name: reg, full: ascii}, true
}

func ipHost(a netip.Addr) (reduced, bool) {
	a = a.Unmap().WithZone("")
	if !a.IsGlobalUnicast() || a.IsPrivate() {
		return reduced{}, false
	}
	return reduced{ip: a, full: a.String()}, true
}

// validName reports whether s is a syntactically usable DNS name: labels
// of 1-63 letters, digits, '-' or '_', 253 bytes at most, two labels at
// least.
func validName(s string) bool {
	if len(s) == 0 || len(s) > 253 || !strings.Contains(s, ".") {
		return false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '.':
			if n == 0 {
				return false
			}
			n = 0
			continue
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_':
		default:
			return false
		}
		n++
		if n > 63 {
			return false
		}
	}
	return n > 0
}

// endsInNumber is the WHATWG URL Standard's "ends in a number" test: a
// host whose last label is digits or 0x-hex is parsed as an IPv4 address
// (or is invalid), never looked up as a name.
func endsInNumber(s string) bool {
	s = strings.TrimSuffix(s, ".")
	last := s[strings.LastIndexByte(s, '.')+1:]
	if last == "" {
		return false
	}
	if allDigits(last) {
		return true
	}
	if len(last) >= 2 && (last[:2] == "0x" || last[:2] == "0X") {
		for _, c := range []byte(last[2:]) {
			if !isHex(c) {
				return false
			}
		}
		return true
	}
	return false
}

// parseIPv4 is the WHATWG IPv4 parser: one to four parts, each decimal,
// 0x-hex or 0-prefixed octal; the last part fills the remaining bytes.
func parseIPv4(s string) (netip.Addr, bool) {
	s = strings.TrimSuffix(s, ".")
	parts := strings.Split(s, ".")
	if len(parts) > 4 {
		return netip.Addr{}, false
	}
	nums := make([]uint64, len(parts))
	for i, p := range parts {
		n, ok := ipv4Number(p)
		if !ok {
			return netip.Addr{}, false
		}
		nums[i] = n
	}
	for _, n := range nums[:len(nums)-1] {
		if n > 255 {
			return netip.Addr{}, false
		}
	}
	last := nums[len(nums)-1]
	if last >= 1<<(8*(5-len(nums))) {
		return netip.Addr{}, false
	}
	v := last
	for i, n := range nums[:len(nums)-1] {
		v += n << (8 * (3 - i))
	}
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), true
}

func ipv4Number(p string) (uint64, bool) {
	if p == "" {
		return 0, false
	}
	base := 10
	switch {
	case len(p) >= 2 && (p[:2] == "0x" || p[:2] == "0X"):
		p, base = p[2:], 16
		if p == "" {
			return 0, true
		}
	case len(p) >= 2 && p[0] == '0':
		p, base = p[1:], 8
	}
	if len(p) > 12 {
		return 0, false // far above 2^32 in any base
	}
	n, err := strconv.ParseUint(p, base, 64)
	if err != nil {
		return 0, false
	}
	return n, true
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// normalizeDomain brings a configured own domain to the form hosts are
// compared in; "" when it is no usable name.
func normalizeDomain(d string) string {
	ascii, err := idnaProfile.ToASCII(strings.TrimSpace(d))
	if err != nil {
		return ""
	}
	ascii = strings.TrimSuffix(strings.ToLower(ascii), ".")
	if !validName(ascii) {
		return ""
	}
	return ascii
}
