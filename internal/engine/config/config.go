// Package config loads and validates aupguard's YAML configuration. Unknown
// keys are refused, and every error is reported with its place (file:line)
// so that a postmaster can fix a config in one pass.
package config

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/aupguard/aupguard/internal/engine/policy"
)

// Config is the whole configuration. Each section has its own file in this
// package with its type, defaults and validation.
type Config struct {
	// File is the path the config was read from.
	File string `yaml:"-"`

	Milter       MilterConfig       `yaml:"milter"`
	Log          LogConfig          `yaml:"log"`
	Store        StoreConfig        `yaml:"store"`
	DNS          DNSConfig          `yaml:"dns"`
	Admin        AdminConfig        `yaml:"admin"`
	SecretFile   string             `yaml:"secret_file"`
	Provider     ProviderConfig     `yaml:"provider"`
	Unidentified UnidentifiedConfig `yaml:"unidentified"`
	// LocalSubmission attributes mail submitted on the MTA host itself
	// (sendmail, PHP mail(), cron); see local.go.
	LocalSubmission LocalSubmissionConfig `yaml:"local_submission"`

	// Chain is the order the checks run in; each name must be a known check.
	Chain     []string               `yaml:"chain"`
	Checks    map[string]CheckConfig `yaml:"checks"`
	Defaults  Defaults               `yaml:"defaults"`
	Customers []Customer             `yaml:"customers"`
	// Resellers are the resellers customers[].reseller may name (reseller.go).
	Resellers []Reseller `yaml:"resellers"`
	// Directory bounds what a customer entry may claim.
	Directory DirectoryConfig `yaml:"directory"`

	Events  EventsConfig  `yaml:"events"`
	Reports ReportsConfig `yaml:"reports"`
	// Audit is the trail of changes made through the API, console and CLI.
	Audit AuditConfig `yaml:"audit"`

	Notifications NotificationsConfig `yaml:"notifications"`

	// Runtime is the Go runtime's tuning of serve (runtime.go).
	Runtime RuntimeConfig `yaml:"runtime"`

	// Raw holds the top-level sections that check families own (see
	// SectionSpec), as YAML; the core does not read them.
	Raw map[string]yaml.Node `yaml:",inline"`
	// sections are the families' decoded settings (Section).
	sections sections

	root *yaml.Node
	// warnings are found at Parse (Warnings).
	warnings Errors
}

// MilterConfig is the milter listener.
type MilterConfig struct {
	// Listen is "unix:PATH" (the default, DefaultListen) or
	// "inet:HOST:PORT".
	Listen string `yaml:"listen"`
	// AllowedMTAs lists the addresses or networks remote MTAs may connect
	// from over TCP; it is required when Listen is not on loopback.
	AllowedMTAs []string `yaml:"allowed_mtas"`
	// AllowedPeers are the Unix users (names or uids) whose processes may
	// connect: checked on a Unix socket (SO_PEERCRED) and for every TCP
	// peer on this host (the owner of its socket). Default: postfix, root.
	AllowedPeers []string `yaml:"allowed_peers"`
	// SocketGroup is the group of a unix: socket (mode 0660): the MTA's.
	// Default: postfix.
	SocketGroup     string        `yaml:"socket_group"`
	MaxConnections  int           `yaml:"max_connections"`
	ReadTimeout     time.Duration `yaml:"read_timeout"`
	WriteTimeout    time.Duration `yaml:"write_timeout"`
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// DecisionTimeout bounds the work behind one reply (store, DNS).
	DecisionTimeout time.Duration `yaml:"decision_timeout"`
}

// LogConfig is the decision log.
type LogConfig struct {
	Format string `yaml:"format"` // json or text
	Level  string `yaml:"level"`  // debug, info, warn, error
	// PlainRecipients logs recipient addresses in plain text; by default
	// they are logged as keyed hashes.
	PlainRecipients bool `yaml:"plain_recipients"`
	// Syslog also sends every line to syslog (RFC 5424), besides stderr.
	Syslog SyslogConfig `yaml:"syslog"`
}

// SyslogConfig sends the log to syslog as well (package
// observability/syslog). Changes take effect at restart.
type SyslogConfig struct {
	Enabled bool `yaml:"enabled"`
	// Address is unix:PATH (default unix:/dev/log), udp:HOST:PORT or
	// tcp:HOST:PORT.
	Address string `yaml:"address"`
	// Facility is a syslog facility name (default mail).
	Facility string `yaml:"facility"`
	// Tag is the APP-NAME (default aupguard).
	Tag string `yaml:"tag"`
}

// StoreConfig selects the counter and list store.
type StoreConfig struct {
	Backend string `yaml:"backend"` // memory or redis
	// Path is where the memory backend persists what must survive a
	// restart (opt-outs, flags). Empty: nothing persists.
	Path string `yaml:"path"`
	// OnError is what a message gets when the store fails: defer or accept.
	OnError Action        `yaml:"on_error"`
	Timeout time.Duration `yaml:"timeout"`
	Redis   RedisConfig   `yaml:"redis"`
}

// RedisConfig is the Redis connection: one address for standalone, several
// for Cluster, MasterName for Sentinel.
type RedisConfig struct {
	Addrs        []string      `yaml:"addrs"`
	Cluster      bool          `yaml:"cluster"`
	MasterName   string        `yaml:"master_name"`
	Username     string        `yaml:"username"`
	PasswordFile string        `yaml:"password_file"`
	DB           int           `yaml:"db"`
	TLS          bool          `yaml:"tls"`
	PoolSize     int           `yaml:"pool_size"`
	DialTimeout  time.Duration `yaml:"dial_timeout"`
	KeyPrefix    string        `yaml:"key_prefix"`
}

// ProviderConfig describes the provider's own mail system.
type ProviderConfig struct {
	// Hostnames of the provider's MTAs; "*." patterns allowed.
	Hostnames []string `yaml:"hostnames"`
	// Networks are the provider's own IP ranges (CIDR).
	Networks []Prefix `yaml:"networks"`
	// AuthServID is the authserv-id the provider's MTAs put in
	// Authentication-Results (RFC 8601 §2.5).
	AuthServID string `yaml:"authserv_id"`
	// EgressIPs are the addresses receivers see the provider's mail come
	// from; SPF is evaluated against them.
	EgressIPs []Addr `yaml:"egress_ips"`
	// HeloName is the name the provider's egress MTAs give in EHLO
	// (Postfix smtp_helo_name, by default $myhostname). Receivers evaluate
	// SPF for null-sender mail (bounces) on it (RFC 7208 §2.4), never on
	// the customer's HELO; empty means the first hostname without "*".
	HeloName   string `yaml:"helo_name"`
	Postmaster string `yaml:"postmaster"`
}

// EgressHelo is the HELO name receivers see from the provider's egress
// MTAs: helo_name, else the first exact entry of hostnames, else "".
func (p *ProviderConfig) EgressHelo() string {
	if p.HeloName != "" {
		return p.HeloName
	}
	for _, h := range p.Hostnames {
		if !strings.Contains(h, "*") {
			return h
		}
	}
	return ""
}

// UnidentifiedConfig is what happens to mail from a client that is no customer.
type UnidentifiedConfig struct {
	Action   Action `yaml:"action"` // reject (default), defer or accept
	Code     int    `yaml:"code"`
	Enhanced string `yaml:"enhanced"`
	Text     string `yaml:"text"`
}

// CheckConfig is the provider-wide setting of one check.
type CheckConfig struct {
	Enabled  *bool             `yaml:"enabled,omitempty"`
	Action   Action            `yaml:"action,omitempty"`
	OnError  Action            `yaml:"on_error,omitempty"`
	Findings map[string]Action `yaml:"findings"`
}

// CustomerCheckConfig is a customer's own setting of one check.
type CustomerCheckConfig struct {
	Enabled  *bool             `yaml:"enabled,omitempty"`
	Action   Action            `yaml:"action,omitempty"`
	Findings map[string]Action `yaml:"findings"`
}

// Defaults apply to every customer that does not override them.
type Defaults struct {
	Mode   string `yaml:"mode"`
	Limits Limits `yaml:"limits"`
}

// Customer is one of the provider's customers.
type Customer struct {
	ID           string `yaml:"id"`
	Name         string `yaml:"name"`
	AbuseContact string `yaml:"abuse_contact"`
	// Reseller is the id of the reseller (resellers:) that sold this
	// customer its hosting; empty for the provider's own customers.
	Reseller string `yaml:"reseller"`
	// Logins are SASL logins, exact or with * and ? globs.
	Logins []string `yaml:"logins"`
	// Networks are client networks in CIDR form (a bare address is a /32 or /128).
	Networks []string `yaml:"networks"`
	// Domains the customer may send as; "*.example.com" for subdomains.
	Domains []string                       `yaml:"domains"`
	Mode    string                         `yaml:"mode"`
	Limits  Limits                         `yaml:"limits"`
	Checks  map[string]CustomerCheckConfig `yaml:"checks"`
	// LoginLimits apply to each of the customer's logins on its own (a
	// SASL login, or the Unix login of local submission), besides the
	// customer's limits; LoginOverrides replace them for one login. Only
	// the counted rates and quotas apply (ValidateLoginLimits); nothing is
	// inherited from defaults.limits.
	LoginLimits    Limits            `yaml:"login_limits,omitempty"`
	LoginOverrides map[string]Limits `yaml:"login_overrides,omitempty"`

	// LocalUsers are the Unix logins (or "uid:N") on the MTA host whose
	// locally submitted mail (sendmail, PHP mail(), cron) is this
	// customer's; see LocalSubmissionConfig.
	LocalUsers []string `yaml:"local_users"`

	// Force allows what the directory refuses by default but a provider
	// may mean: a network broader than directory.max_network_prefix, a
	// catch-all login pattern, a public-suffix domain, and overlaps with
	// another customer's networks or domains (with either entry forced).
	// Every rule it waives is logged as a warning and, for a change of the
	// live directory, in its change log.
	Force bool `yaml:"force,omitempty"`

	CustomerAuth   `yaml:",inline"`
	CustomerOptOut `yaml:",inline"`

	// Settings are the families' typed settings of this customer, made
	// from the keys above by their customer sections (CustomerSection)
	// when the customer is validated; the identification index hands them
	// to the checks (policy.Customer.Settings).
	Settings policy.Settings `yaml:"-"`
}

// CustomerOptOut is a customer's own opt-out and bulk settings. The keys
// belong to the customer entry (customers: is core); their meaning and
// validation are package optout's (optout.CustomerSection).
type CustomerOptOut struct {
	// Unsubscribe says what happens to bulk mail without one-click
	// unsubscribe headers: "require" (refuse it) or "add" (the gateway adds
	// List-Unsubscribe and List-Unsubscribe-Post pointing at its own
	// endpoint). Empty inherits bulk.unsubscribe.
	Unsubscribe string `yaml:"unsubscribe"`
	// FingerprintRecipients overrides bulk.fingerprint_recipients (nil inherits).
	FingerprintRecipients *int `yaml:"fingerprint_recipients,omitempty"`
}

// Options tune Load.
type Options struct {
	// Checks are the names of the checks the binary knows; a chain or
	// checks entry naming another is an error. Nil skips that validation.
	Checks []string
	// Specs are what the known checks declare (findings, dependencies):
	// finding names under checks: are validated against them, and so is
	// the chain's order. Nil skips that validation.
	Specs []policy.Spec
	// DefaultChain is used when the config has no chain.
	DefaultChain []string
	// Sections are the top-level sections check families own: each is
	// handed its raw YAML to decode and validate. A top-level key that is
	// neither core nor one of them is an error. Nil skips that validation
	// (families then decode their section when asked, Config.SectionOf).
	Sections []SectionSpec
	// Customers are the families' sections of a customer entry: each
	// validates its keys of every customer and makes its typed settings
	// of it (Customer.Settings). Nil skips them.
	Customers []CustomerSection
}

// Error is one configuration error with its place.
type Error struct {
	File string
	Line int
	Path string
	Msg  string
}

func (e Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d", e.Line)
		}
		b.WriteString(": ")
	}
	if e.Path != "" {
		b.WriteString(e.Path + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// isEmptyDocument reports whether a YAML document holds no value: an
// empty file, blanks and comments only, a bare "---", or an explicit null.
func isEmptyDocument(root *yaml.Node) bool {
	if len(root.Content) == 0 {
		return true
	}
	n := root.Content[0]
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

// Errors is every error found in a config, in file order.
type Errors []Error

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Load reads, decodes and validates the config file at path.
func Load(path string, opts Options) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, Errors{{File: path, Msg: err.Error()}}
	}
	return Parse(data, path, opts)
}

// Parse decodes and validates config data; file names it in errors.
func Parse(data []byte, file string, opts Options) (*Config, error) {
	cfg := &Config{File: file}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, Errors{yamlError(file, err.Error())}
	}
	if isEmptyDocument(&root) {
		// Every setting has a default, so an empty file would be a valid
		// config with no customers: every message refused as unidentified.
		// A config tool that truncated the file while writing it must not
		// turn the gateway into that.
		return nil, Errors{{File: file, Line: 1, Msg: "the config is empty (no settings, only comments or blank lines); refusing it: an empty file is more likely truncated than meant"}}
	}
	// The document is parsed once, into root (which places errors and
	// warnings), and decoded from it: parsing twice (the tree, then
	// yaml.Decoder's own tree) was the larger part of a config's load at
	// 100,000 customers. Unknown keys are found by walking root against
	// Config's type (unknownKeys), as yaml.v3's KnownFields would.
	// Type and unknown-key errors do not stop decoding (yaml.v3 collects
	// them), so validation below still runs and every error is reported.
	var es Errors
	unknownKeys(root.Content[0], reflect.TypeOf(cfg), "", func(n *yaml.Node, p, k string) {
		es = append(es, Error{File: file, Line: n.Line, Path: p,
			Msg: fmt.Sprintf("unknown key %q", k) + didYouMean(k, yamlKeys(reflect.TypeOf(cfg), p, ""))})
	})
	if err := root.Content[0].Decode(cfg); err != nil {
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			return nil, Errors{yamlError(file, err.Error())}
		}
		for _, m := range te.Errors {
			e := yamlError(file, m)
			e.Path = pathAtLine(root.Content[0], "", e.Line)
			es = append(es, e)
		}
	}
	if len(root.Content) > 0 {
		cfg.root = root.Content[0]
	}
	cfg.applyDefaults(opts)
	v := &validator{cfg: cfg, opts: opts}
	cfg.validate(v)
	cfg.decodeSections(v, opts)
	v.errs = append(es, v.errs...)
	// Warnings are placed now, while the tree is there.
	cfg.warnings = append(cfg.findWarnings(file), v.warns...)
	// The YAML tree only serves to place errors; a config of 100,000
	// customers would otherwise keep hundreds of MB of it alive.
	cfg.root = nil
	if len(v.errs) > 0 {
		sort.SliceStable(v.errs, func(i, j int) bool { return v.errs[i].Line < v.errs[j].Line })
		return nil, v.errs
	}
	return cfg, nil
}

// yamlError turns a yaml.v3 message ("line 3: field x not found...") into an Error.
func yamlError(file, msg string) Error {
	msg = strings.TrimPrefix(msg, "yaml: ")
	var line int
	if n, _ := fmt.Sscanf(msg, "line %d:", &line); n == 1 {
		if i := strings.Index(msg, ":"); i >= 0 {
			msg = strings.TrimSpace(msg[i+1:])
		}
	}
	return Error{File: file, Line: line, Msg: msg}
}

// Marshal renders the effective config (after defaults) as YAML.
// The families' sections are rendered from their decoded settings (with
// their defaults), not as written.
func (c *Config) Marshal() ([]byte, error) {
	cp := *c
	cp.Raw = make(map[string]yaml.Node, len(c.Raw)+len(c.sections.typed))
	for k, n := range c.Raw {
		cp.Raw[k] = n
	}
	for k, v := range c.sections.typed {
		var n yaml.Node
		if err := n.Encode(v); err != nil {
			return nil, fmt.Errorf("%s: %w", k, err)
		}
		cp.Raw[k] = n
	}
	return yaml.Marshal(&cp)
}

// CheckEnabled reports whether the named check is enabled provider-wide.
func (c *Config) CheckEnabled(name string) bool {
	cc, ok := c.Checks[name]
	return !ok || cc.Enabled == nil || *cc.Enabled
}
