// Package optout keeps the per-customer and provider-wide suppression lists
// (opt-outs), takes opt-outs in from every place they arrive (admin API,
// CLI, CSV import, RFC 8058 one-click unsubscribe, RFC 5965 complaints),
// counts complaints and sends to opted-out recipients, flags customers who
// keep sending to them, and provides the checks that enforce all of it:
// optout_suppression (RCPT), bulk_mail (end of message), feedback_stamp and
// unsubscribe_link (headers added to accepted mail).
//
// State lives in one Backend per store handle (store.Handle.Shared): the
// memory backend persists to an append-only, fsynced log under store.path;
// the Redis backend keeps each customer's keys in its Cluster slot.
package optout

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/mailaddr"
	"github.com/aupguard/aupguard/internal/secrets"
)

// GlobalList names the provider-wide suppression list (complaints against
// the provider, spam traps) wherever a list is named by customer id. A
// customer id cannot contain '*' (config validation).
const GlobalList = "*"

// Sources of an entry.
const (
	SourceAPI         = "api"
	SourceCLI         = "cli"
	SourceImport      = "import"
	SourceUnsubscribe = "unsubscribe"
	SourceComplaint   = "complaint"
)

// validSource reports whether s is one of the sources above.
func validSource(s string) bool {
	switch s {
	case SourceAPI, SourceCLI, SourceImport, SourceUnsubscribe, SourceComplaint:
		return true
	}
	return false
}

// Entry is one suppressed address on one list.
type Entry struct {
	// List is the customer id, or GlobalList.
	List string `json:"list"`
	// Hash is the keyed hash of the canonical address; it is the key.
	Hash string `json:"hash"`
	// Address is the canonical address, kept only with optout.keep_plain.
	Address string    `json:"address,omitempty"`
	Source  string    `json:"source"`
	Time    time.Time `json:"time"`
	Note    string    `json:"note,omitempty"`
}

// Flag is a customer's escalation flag: set when it kept sending to
// opted-out recipients, cleared only by a postmaster.
type Flag struct {
	Reason string    `json:"reason"`
	Since  time.Time `json:"since"`
	// Hits is the count of sends to opted-out recipients when the flag was raised.
	Hits int64 `json:"hits"`
}

// Window is a rolling window counted in Buckets buckets: the count is the
// sum of the buckets that cover the last Width, to within one bucket.
type Window struct {
	Width   time.Duration
	Buckets int
}

// bucketCount is how many buckets a window is split into.
const bucketCount = 24

// NewWindow returns a rolling window of width w.
func NewWindow(w time.Duration) Window { return Window{Width: w, Buckets: bucketCount} }

func (w Window) size() int64 {
	s := w.Width.Milliseconds() / int64(w.Buckets)
	if s < 1 {
		s = 1
	}
	return s
}

// index is the bucket now falls into.
func (w Window) index(now time.Time) int64 { return now.UnixMilli() / w.size() }

// Settings are the opt-out and bulk settings of the package's checks and
// service, built once from the typed optout: and bulk: sections.
type Settings struct {
	// CaseSensitive keeps the local part's case; FoldSubaddress drops "+tag".
	CaseSensitive  bool
	FoldSubaddress bool
	// KeepPlain stores the canonical address beside its hash.
	KeepPlain bool
	// Secret keys the address hashes and signs unsubscribe tokens.
	Secret secrets.Key
	// Escalation: Threshold hits within Escalation flag a customer.
	Threshold  int
	Escalation Window
	// Rate is the complaint-rate window; Warn and Act its thresholds.
	Rate         Window
	Warn, Act    float64
	MinDelivered int64
	// RecordTTL is how long a stamped message can be complained about;
	// ReporterCap the complaint reports accepted per reporter and hour.
	RecordTTL   time.Duration
	ReporterCap int64
	// UnsubscribeBase is the public base URL of unsubscribe links.
	UnsubscribeBase string
	TokenTTL        time.Duration
	// SenderID is the Feedback-ID's last field; FeedbackID says whether
	// feedback_stamp adds a Feedback-ID.
	SenderID   string
	FeedbackID bool
	// FingerprintWindow is the window of bulk_mail's body fingerprint count.
	FingerprintWindow time.Duration
	// Bulk is bulk_mail's provider-wide default; Customers the own
	// settings (their keys over the default) of the customers that have
	// bulk keys, by customer id (BulkFor). The bulk_mail check reads a
	// customer's from the customer itself (CustomerSection).
	Bulk      CustomerBulk
	Customers map[string]CustomerBulk
}

// SettingsFromConfig builds the Settings of cfg's optout: and bulk:
// sections (ConfigOf, BulkConfigOf) and customers, with the secret key.
func SettingsFromConfig(cfg *config.Config, key secrets.Key) (*Settings, error) {
	o, err := ConfigOf(cfg)
	if err != nil {
		return nil, err
	}
	b, err := BulkConfigOf(cfg)
	if err != nil {
		return nil, err
	}
	return NewSettings(o, b, cfg.Customers, key)
}

// NewSettings builds the Settings of the typed sections o and b, for the
// customers list, with the secret key.
func NewSettings(o *Config, b *BulkConfig, customers []config.Customer, key secrets.Key) (*Settings, error) {
	if len(key) == 0 {
		return nil, errors.New("optout: no secret key")
	}
	s := &Settings{
		CaseSensitive:     o.CaseSensitiveLocal,
		FoldSubaddress:    o.FoldsSubaddress(),
		KeepPlain:         o.KeepPlain,
		Secret:            key,
		Threshold:         o.Escalation.Threshold,
		Escalation:        NewWindow(o.Escalation.Window),
		Rate:              NewWindow(o.Complaints.Window),
		Warn:              o.Complaints.Warn,
		Act:               o.Complaints.Act,
		MinDelivered:      int64(o.Complaints.MinDelivered),
		RecordTTL:         o.Complaints.RecordTTL,
		ReporterCap:       int64(o.Complaints.ReporterCap),
		UnsubscribeBase:   o.Unsubscribe.BaseURL,
		TokenTTL:          o.Unsubscribe.TokenTTL,
		SenderID:          o.Feedback.SenderID,
		FeedbackID:        o.AddsFeedbackID(),
		FingerprintWindow: b.FingerprintWindow,
		Bulk:              CustomerBulk{AddUnsubscribe: b.Unsubscribe == UnsubscribeAdd, FingerprintRecipients: b.FingerprintRecipients},
		Customers:         map[string]CustomerBulk{},
	}
	for i := range customers {
		// Only a customer with bulk keys of its own differs from Bulk.
		if cu := &customers[i]; cu.Unsubscribe != "" || cu.FingerprintRecipients != nil {
			s.Customers[cu.ID] = customerBulk(b, cu)
		}
	}
	return s, nil
}

// customerBulk is the bulk settings of customer cu: its own keys over b.
func customerBulk(b *BulkConfig, cu *config.Customer) CustomerBulk {
	cb := CustomerBulk{AddUnsubscribe: b.UnsubscribeMode(cu) == UnsubscribeAdd, FingerprintRecipients: b.FingerprintRecipients}
	if cu.FingerprintRecipients != nil {
		cb.FingerprintRecipients = *cu.FingerprintRecipients
	}
	return cb
}

// BulkFor returns the bulk settings of a customer: its own, or Bulk.
func (s *Settings) BulkFor(id string) CustomerBulk {
	if cb, ok := s.Customers[id]; ok {
		return cb
	}
	return s.Bulk
}

// Canonical normalises an address for suppression: the domain is a
// lower-case A-label (RFC 5890, via mailaddr), the local part is
// lower-cased unless configured otherwise (RFC 5321 §2.4 lets the receiving
// host decide; nearly all treat it case-insensitively) and "+tag" folded
// when configured.
//
// Control characters (C0, DEL, C1) and invalid UTF-8 are refused: an
// address typed, imported or reported never holds one (the MTA's
// recipients reach the checks through canonicalAddr, already parsed).
func (s *Settings) Canonical(addr string) (string, error) {
	if err := mailaddr.CheckText(addr); err != nil {
		return "", fmt.Errorf("bad address %q: %v", addr, err)
	}
	a, err := mailaddr.Parse(addr)
	if err != nil {
		return "", fmt.Errorf("bad address %q: %v", addr, err)
	}
	return s.canonicalAddr(a)
}

func (s *Settings) canonicalAddr(a mailaddr.Address) (string, error) {
	if a.Null || a.Domain == "" || a.Local == "" {
		return "", fmt.Errorf("bad address %q: need local@domain", a.String())
	}
	if strings.ContainsAny(a.Local, " \t\r\n<>,") || strings.ContainsAny(a.Domain, " @") || strings.Contains(a.Local, "@") && !strings.HasPrefix(a.Local, "\"") {
		return "", fmt.Errorf("bad address %q", a.String())
	}
	if len(a.Local) > 64 {
		// RFC 5321 §4.5.3.1.1: at most 64 octets of local part.
		return "", fmt.Errorf("bad address %q: local part longer than 64 octets", a.String())
	}
	return a.Canonical(s.CaseSensitive, s.FoldSubaddress), nil
}

// Hash returns the keyed hash an address is stored under.
func (s *Settings) Hash(canonical string) string { return s.Secret.Hash("optout", canonical) }

// NewEntry builds the entry for a canonical address on a list.
func (s *Settings) NewEntry(list, canonical, source, note string, now time.Time) Entry {
	e := Entry{List: list, Hash: s.Hash(canonical), Source: source, Time: now.UTC().Truncate(time.Second), Note: note}
	if s.KeepPlain {
		e.Address = canonical
	}
	return e
}

// isHash reports whether s looks like a stored hash (32 lower-case hex).
func isHash(s string) bool {
	if len(s) != 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// validList reports whether list names a list: GlobalList or a customer id.
func validList(list string) error {
	if list == GlobalList {
		return nil
	}
	if list == "" {
		return errors.New("no list: give a customer id, or * for the provider-wide list")
	}
	for _, r := range list {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return fmt.Errorf("bad customer id %q", list)
		}
	}
	return nil
}

// knownList reports whether list names an existing list: GlobalList or the
// id of a configured customer. A typo must not record an opt-out on a list
// no check ever reads, so an unknown id is an error naming the known ones.
// With no config (tests of the package alone) only the syntax is checked.
func knownList(cfg *config.Config, list string) error {
	if err := validList(list); err != nil {
		return err
	}
	if list == GlobalList || cfg == nil {
		return nil
	}
	ids := make([]string, 0, len(cfg.Customers))
	for _, cu := range cfg.Customers {
		if cu.ID == list {
			return nil
		}
		ids = append(ids, cu.ID)
	}
	sort.Strings(ids)
	return fmt.Errorf("unknown list %q: known lists are %s (customer ids) and * (provider-wide)", list, strings.Join(ids, ", "))
}
