package ratelimit

import (
	"crypto/sha256"
	"encoding/base64"

	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/policy"
)

// loginLimits are a customer's per-login limits: login_limits for every
// login, login_overrides for some (each its own settings, replacing the
// defaults for that login field by field).
type loginLimits struct {
	def       Settings
	overrides map[string]Settings
}

// counts reports whether s has a counted limit.
func (s Settings) counts() bool {
	for _, l := range countedLimits {
		if l.get(s) > 0 {
			return true
		}
	}
	return false
}

// loginsOf resolves a customer's per-login limits when it is validated
// (with its other limits, CustomerSection); nil when it has none.
func loginsOf(sp *Config, c *config.Customer) *loginLimits {
	ll := loginLimits{def: fromLimits(sp, c.LoginLimits)}
	for login, l := range c.LoginOverrides {
		if ll.overrides == nil {
			ll.overrides = map[string]Settings{}
		}
		ll.overrides[login] = fromLimits(sp, c.LoginLimits.Merge(l))
	}
	if !ll.def.counts() && len(ll.overrides) == 0 {
		return nil
	}
	return &ll
}

// resellerLimits resolves every reseller's limits once per config (only
// those that limit something).
func resellerLimits(cfg *config.Config, sp *Config) map[string]Settings {
	resellers := map[string]Settings{}
	for _, r := range cfg.Resellers {
		if s := fromLimits(sp, r.Limits); s.counts() {
			resellers[r.ID] = s
		}
	}
	return resellers
}

// Login is the login a message was sent with: the SASL login, or the Unix
// login of local submission; "" when neither is known (a client
// identified by its network).
func Login(c *policy.Conn) string { return c.Login() }

// loginKey names a login's counters among its customer's: a digest, so
// that a login of any length and bytes makes a short, plain key.
func loginKey(login string) string {
	sum := sha256.Sum256([]byte(login))
	return "l:" + base64.RawURLEncoding.EncodeToString(sum[:12])
}

// scope is one set of counters a message counts against besides its
// customer's: its login's or its reseller's.
type scope struct {
	kind, owner, prefix string
	s                   Settings
}

// scopes returns the login and reseller counters of t's message (login
// first: reseller-wide ops come last in a run, see slots).
func (c *Checks) scopes(t *policy.Txn) []scope {
	var out []scope
	if ll := c.settings(t).logins; ll != nil {
		if login := Login(t.Conn); login != "" {
			s, over := ll.overrides[login]
			if !over {
				s = ll.def
			}
			if s.counts() {
				out = append(out, scope{kind: ScopeLogin, owner: login, prefix: loginKey(login) + ":", s: s})
			}
		}
	}
	if r := t.Customer.Reseller; r != "" {
		if s, ok := c.resellers[r]; ok {
			out = append(out, scope{kind: ScopeReseller, owner: r, s: s})
		}
	}
	return out
}

// op returns the scope's counter op of a limit for amount n.
func (sc scope) op(l counted, limit, n int64) Op {
	o := l.op(limit, n)
	o.Key = sc.prefix + o.Key
	o.Scope, o.Owner = sc.kind, sc.owner
	return o
}
