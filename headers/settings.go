package headers

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/policy"
	"github.com/aupguard/aupguard/internal/mailaddr"
)

// Replies. RFC 3463 §3.8: X.7.1, delivery not authorized, message refused.
// The texts are short and generic; the log carries the detail.
var (
	// ReplySender refuses a sender identity the customer does not own.
	ReplySender = policy.MustReply(550, "5.7.1", "Sender address not permitted")
	// ReplyForged refuses forged or obfuscating header fields.
	ReplyForged = policy.MustReply(550, "5.7.1", "Forged or malformed header")
)

// Provider is what the checks know of the provider's own mail system,
// from the config's provider section.
type Provider struct {
	// Hostnames of the provider's MTAs (exact or "*." patterns).
	Hostnames []mailaddr.Pattern
	// Networks are the provider's own addresses: its networks and egress IPs.
	Networks []netip.Prefix
	// AuthservIDs are the provider's authserv-ids, lower-case.
	AuthservIDs []string
}

// OwnsHost reports whether a host name belongs to the provider.
func (p *Provider) OwnsHost(host string) bool {
	d, err := mailaddr.NormalizeDomain(strings.Trim(host, "[]"))
	if err != nil || d == "" {
		return false
	}
	for _, h := range p.Hostnames {
		if h.Match(d) {
			return true
		}
	}
	return false
}

// OwnsAddr reports whether an IP address belongs to the provider.
func (p *Provider) OwnsAddr(a netip.Addr) bool {
	return containsAddr(p.Networks, a)
}

// OwnsAuthservID reports whether an authserv-id is the provider's: one of
// the configured ids or one of its hostnames (RFC 8601 §2.5 recommends the
// host name of the MTA as authserv-id). Compared case-insensitively.
func (p *Provider) OwnsAuthservID(id string) bool {
	if id == "" {
		return false
	}
	for _, a := range p.AuthservIDs {
		if strings.EqualFold(a, id) {
			return true
		}
	}
	return p.OwnsHost(id)
}

func containsAddr(ps []netip.Prefix, a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Settings are the checks' settings, built from the config.
type Settings struct {
	Provider Provider
	// MaxCount, MaxBytes and MaxLineLength are the header section caps.
	MaxCount      int
	MaxBytes      int64
	MaxLineLength int
	// OriginHeaders are the canonical names of the origin headers.
	OriginHeaders []string
	// OriginAllowed are networks any customer's origin headers may name.
	OriginAllowed []netip.Prefix
	// TrustedReceived is how many topmost Received: fields the provider's
	// MTAs wrote before the milter saw the message (0 with Postfix).
	TrustedReceived int
	// ReceivedDepth is how many client Received: fields are examined; 0 = all.
	ReceivedDepth int
}

// SettingsFromConfig builds the settings from a validated config.
func SettingsFromConfig(cfg *config.Config) (*Settings, error) {
	h, err := ConfigOf(cfg)
	if err != nil {
		return nil, err
	}
	s := &Settings{
		MaxCount:        h.MaxCount,
		MaxBytes:        int64(h.MaxBytes),
		MaxLineLength:   h.MaxLineLength,
		TrustedReceived: h.TrustedReceived,
		ReceivedDepth:   h.ReceivedDepth,
	}
	pv := cfg.Provider
	for _, name := range pv.Hostnames {
		p, err := mailaddr.ParsePattern(name)
		if err != nil {
			return nil, fmt.Errorf("provider.hostnames: %w", err)
		}
		s.Provider.Hostnames = append(s.Provider.Hostnames, p)
	}
	s.Provider.Networks = append(s.Provider.Networks, config.Prefixes(pv.Networks)...)
	for _, a := range pv.EgressIPs {
		s.Provider.Networks = append(s.Provider.Networks, netip.PrefixFrom(a.Addr, a.BitLen()))
	}
	if pv.AuthServID != "" {
		s.Provider.AuthservIDs = append(s.Provider.AuthservIDs, strings.ToLower(pv.AuthServID))
	}
	for _, id := range h.AuthservIDs {
		s.Provider.AuthservIDs = append(s.Provider.AuthservIDs, strings.ToLower(id))
	}
	s.OriginHeaders = append(s.OriginHeaders, h.OriginHeaders...)
	s.OriginAllowed = config.Prefixes(h.OriginAllowedNetworks)
	return s, nil
}

// collector gathers a check's findings, one per finding name: repeated
// occurrences are counted into the first one's detail, so that a hostile
// message with thousands of defects makes one log line, not thousands.
type collector struct {
	out   []policy.Finding
	count []int
}

func (c *collector) add(f policy.Finding) {
	for i := range c.out {
		if c.out[i].Name == f.Name {
			c.count[i]++
			return
		}
	}
	c.out = append(c.out, f)
	c.count = append(c.count, 1)
}

func (c *collector) findings() []policy.Finding {
	for i := range c.out {
		if c.count[i] > 1 {
			c.out[i].Detail += fmt.Sprintf(" (and %d more)", c.count[i]-1)
		}
	}
	return c.out
}

// clip shortens a value quoted in a log detail.
func clip(s string) string {
	const max = 80
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}
