package headers

import (
	"fmt"
	"strings"

	"github.com/aupguard/aupguard/internal/engine/config"
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

// Config is the headers: section of the config, which this package owns:
// the settings of header_syntax, sender_identity and header_forgery. The
// provider's own hostnames, networks and authserv-id come from provider:.
type Config struct {
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
	OriginAllowedNetworks []config.Prefix `yaml:"origin_allowed_networks"`
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

// Section is the headers: section, decoded and validated here.
var Section = config.SectionSpec{Key: "headers", Decode: decodeConfig}

// DefaultConfig is the headers: section when the config leaves it out.
func DefaultConfig() *Config {
	return &Config{
		MaxCount:      DefaultHeaderMaxCount,
		MaxBytes:      DefaultHeaderMaxBytes,
		MaxLineLength: DefaultHeaderMaxLineLength,
		OriginHeaders: append([]string(nil), DefaultOriginHeaders...),
	}
}

// decodeConfig decodes the headers: section over its defaults and
// validates it; errors are placed through s.
func decodeConfig(s *config.Section) any {
	h := DefaultConfig()
	s.Decode(h)
	s.Positive("headers.max_count", h.MaxCount)
	s.Positive("headers.max_bytes", h.MaxBytes)
	s.Positive("headers.received_depth", h.ReceivedDepth)
	if h.MaxLineLength < 78 {
		s.Errorf("headers.max_line_length", "must be at least 78 (RFC 5322 §2.1.1), got %d", h.MaxLineLength)
	}
	seen := map[string]bool{}
	for i, name := range h.OriginHeaders {
		p := fmt.Sprintf("headers.origin_headers[%d]", i)
		if !config.ValidFieldName(name) {
			s.Errorf(p, "bad header name %q", name)
		}
		if seen[strings.ToLower(name)] {
			s.Errorf(p, "header %q listed twice", name)
		}
		seen[strings.ToLower(name)] = true
	}
	s.Positive("headers.trusted_received", h.TrustedReceived)
	for i, id := range h.AuthservIDs {
		if id == "" || strings.ContainsAny(id, " \t;()\"") {
			s.Errorf(fmt.Sprintf("headers.authserv_ids[%d]", i), "bad authserv-id %q", id)
		}
	}
	return h
}

// ConfigOf returns the headers: section of cfg (decoded at config.Parse,
// or now for a config parsed without this package's section).
func ConfigOf(cfg *config.Config) (*Config, error) {
	v, err := cfg.SectionOf(Section)
	h, _ := v.(*Config)
	if h == nil {
		h = DefaultConfig()
	}
	return h, err
}
