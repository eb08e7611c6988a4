package config

import (
	"fmt"
	"net/mail"
	"strconv"
	"strings"

	"github.com/aupguard/aupguard/internal/mailaddr"
)

// Reseller is one entry of the resellers: directory: a company that sells
// hosting to its own customers (customers[].reseller names it). Its abuse
// contacts also get the complaints, notifications and reports about its
// customers; its optional limits count the mail of all its customers
// together (package ratelimit).
type Reseller struct {
	// ID names the reseller in customers[].reseller (letters, digits,
	// '-', '_', '.'; at most MaxIDLength).
	ID   string `yaml:"id"`
	Name string `yaml:"name"`
	// AbuseContacts are the addresses that also receive what is sent
	// about the reseller's customers (the provider keeps its copy).
	AbuseContacts []string `yaml:"abuse_contacts"`
	// Limits are reseller-wide: only the counted rates and quotas apply
	// (messages and recipients per minute/hour/day, bytes per day); a
	// field left out is unlimited (no defaults are inherited).
	Limits Limits `yaml:"limits"`
}

// Reseller returns the reseller with the given id, or nil.
func (c *Config) Reseller(id string) *Reseller {
	if id == "" {
		return nil
	}
	for i := range c.Resellers {
		if c.Resellers[i].ID == id {
			return &c.Resellers[i]
		}
	}
	return nil
}

// validID reports whether id is a valid customer or reseller id's text.
func validID(id string) bool {
	if id == "" || len(id) > MaxIDLength {
		return false
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

// validateResellers checks the resellers: directory: ids unique and well
// formed, abuse contacts addresses, limits only of the counted kinds.
func (c *Config) validateResellers(v *validator) {
	ids := make(map[string]int, len(c.Resellers))
	for i := range c.Resellers {
		r := &c.Resellers[i]
		p := "resellers[" + strconv.Itoa(i) + "]"
		switch {
		case r.ID == "":
			v.errf(p+".id", "reseller needs an id")
		case !validID(r.ID):
			v.errf(p+".id", "id %q: only letters, digits, '-', '_' and '.' are allowed, at most %d", r.ID, MaxIDLength)
		default:
			if j, dup := ids[r.ID]; dup {
				v.errf(p+".id", "id %q already used by resellers[%d]", r.ID, j)
			}
			ids[r.ID] = i
		}
		if err := mailaddr.CheckText(r.Name); err != nil {
			v.errf(p+".name", "name %q: %v", r.Name, err)
		}
		for j, a := range r.AbuseContacts {
			if _, err := mail.ParseAddress(a); err != nil || strings.ContainsAny(a, "\r\n") {
				v.errf(fmt.Sprintf("%s.abuse_contacts[%d]", p, j), "bad address %q", a)
			}
		}
		r.Limits.validateCounted(v, p+".limits", "a reseller-wide")
	}
}

// validateCounted checks limits that only count messages, recipients and
// bytes over time (reseller-wide and per-login limits): the per-message,
// per-recipient and spike settings are the customer's.
func (l Limits) validateCounted(v *validator, p, what string) {
	l.validate(v, p)
	for name, set := range map[string]bool{
		"recipients_per_message": l.RecipientsPerMessage != nil,
		"message_size":           l.MessageSize != nil,
		"per_recipient_per_hour": l.PerRecipientPerHour != nil,
		"per_recipient_per_day":  l.PerRecipientPerDay != nil,
		"fold_subaddress":        l.FoldSubaddress != nil,
		"case_sensitive_local":   l.CaseSensitiveLocal != nil,
		"spike_factor":           l.SpikeFactor != nil,
		"spike_floor":            l.SpikeFloor != nil,
		"spike_baseline":         l.SpikeBaseline != nil,
	} {
		if set {
			v.errf(p+"."+name, "not %s limit (only messages_per_minute/hour/day, recipients_per_hour/day, bytes_per_day); set it in the customer's limits", what)
		}
	}
}

// validateLoginLimits checks a customer's login_limits and
// login_overrides.
func (c *Config) validateLoginLimits(v *validator, p string, cu *Customer) {
	cu.LoginLimits.validateCounted(v, p+".login_limits", "a per-login")
	for login, l := range cu.LoginOverrides {
		lp := p + ".login_overrides." + login
		if login == "" || mailaddr.CheckText(login) != nil || strings.ContainsAny(login, "*?[") {
			v.errf(lp, "want one login (no glob, no control character), got %q", login)
			continue
		}
		l.validateCounted(v, lp, "a per-login")
	}
}

// validateCustomerReseller checks that customers[i].reseller names a
// reseller of the resellers: directory.
func (c *Config) validateCustomerReseller(v *validator, p string, cu *Customer) {
	if cu.Reseller == "" || c.Reseller(cu.Reseller) != nil {
		return
	}
	if err := mailaddr.CheckText(cu.Reseller); err != nil {
		v.errf(p+".reseller", "reseller %q: %v", cu.Reseller, err)
		return
	}
	v.errf(p+".reseller", "unknown reseller %q (not in resellers:)", cu.Reseller)
}
