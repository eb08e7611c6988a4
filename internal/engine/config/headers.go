package config

import (
	"fmt"
	"strings"
)

// Defaults of the headers section.
const (
	// DefaultHeaderMaxCount is the most header fields a message may carry.
	DefaultHeaderMaxCount = 500
	// DefaultHeaderMaxBytes is the largest header section accepted (256 KiB).
	DefaultHeaderMaxBytes = 256 * 1024
	// DefaultHeaderMaxLineLength is RFC 5322 §2.1.1's limit: 998 octets
	// per line, excluding the CRLF.
	DefaultHeaderMaxLineLength = 998
)

// DefaultOriginHeaders are the headers that name the address a message
// originated from (webmail, submission proxies) and are checked against
// the customer's own addresses.
var DefaultOriginHeaders = []string{"X-Originating-IP", "X-Sender-IP", "X-Source-IP"}

// HeadersConfig configures the header and sender-identity checks
// (header_syntax, sender_identity, header_forgery in package headers). The
// provider's own hostnames, networks and authserv-id come from provider:.
type HeadersConfig struct {
	// MaxCount is the most header fields a message may have
	// (finding header_count_exceeded).
	MaxCount int `yaml:"max_count"`
	// MaxBytes is the largest header section, in octets
	// (finding header_section_too_large).
	MaxBytes int `yaml:"max_bytes"`
	// MaxLineLength is the longest header line, in octets without the
	// CRLF (finding header_line_too_long); at least 78, RFC 5322 §2.1.1.
	MaxLineLength int `yaml:"max_line_length"`
	// OriginHeaders are header names that carry the address a message
	// originated from; each must name an address of the customer. An
	// explicit empty list turns the origin check off.
	OriginHeaders []string `yaml:"origin_headers"`
	// OriginAllowedNetworks are extra networks (CIDR) an origin header may
	// name for every customer, besides the SMTP client address and the
	// customer's own networks (e.g. the provider's webmail front-ends).
	OriginAllowedNetworks []string `yaml:"origin_allowed_networks"`
	// TrustedReceived is how many topmost Received: fields the provider's
	// own MTAs wrote before the milter sees the message: 0 with Postfix
	// running the milter at submission (Postfix does not pass the
	// Received: it adds to milters); 1 with an MTA that does (Sendmail), or
	// with the milter on a relay one provider hop behind the submission
	// MTA. Those fields, and any above them, are not the client's.
	TrustedReceived int `yaml:"trusted_received"`
	// ReceivedDepth limits how many client-supplied Received: fields,
	// from the top, are examined for provider forgeries; 0 examines all.
	ReceivedDepth int `yaml:"received_depth"`
	// AuthservIDs are further authserv-ids (RFC 8601 §2.5) that belong to
	// the provider, besides provider.authserv_id and provider.hostnames.
	AuthservIDs []string `yaml:"authserv_ids"`
}

func (h *HeadersConfig) defaults() {
	if h.MaxCount == 0 {
		h.MaxCount = DefaultHeaderMaxCount
	}
	if h.MaxBytes == 0 {
		h.MaxBytes = DefaultHeaderMaxBytes
	}
	if h.MaxLineLength == 0 {
		h.MaxLineLength = DefaultHeaderMaxLineLength
	}
	if h.OriginHeaders == nil {
		h.OriginHeaders = append([]string(nil), DefaultOriginHeaders...)
	}
}

func (h *HeadersConfig) validate(v *validator) {
	v.positive("headers.max_count", h.MaxCount)
	v.positive("headers.max_bytes", h.MaxBytes)
	v.positive("headers.received_depth", h.ReceivedDepth)
	if h.MaxLineLength < 78 {
		v.errf("headers.max_line_length", "must be at least 78 (RFC 5322 §2.1.1), got %d", h.MaxLineLength)
	}
	seen := map[string]bool{}
	for i, name := range h.OriginHeaders {
		p := fmt.Sprintf("headers.origin_headers[%d]", i)
		if !validFieldName(name) {
			v.errf(p, "bad header name %q", name)
		}
		if seen[strings.ToLower(name)] {
			v.errf(p, "header %q listed twice", name)
		}
		seen[strings.ToLower(name)] = true
	}
	for i, n := range h.OriginAllowedNetworks {
		v.prefix(fmt.Sprintf("headers.origin_allowed_networks[%d]", i), n)
	}
	v.positive("headers.trusted_received", h.TrustedReceived)
	for i, id := range h.AuthservIDs {
		if id == "" || strings.ContainsAny(id, " \t;()\"") {
			v.errf(fmt.Sprintf("headers.authserv_ids[%d]", i), "bad authserv-id %q", id)
		}
	}
}

// validFieldName reports whether s is a header field name: printable
// US-ASCII except colon (RFC 5322 §2.2, ftext).
func validFieldName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 33 || s[i] > 126 || s[i] == ':' {
			return false
		}
	}
	return true
}
