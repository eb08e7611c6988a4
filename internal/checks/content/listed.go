package content

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"

	"github.com/aupguard/aupguard/internal/checks/content/links"
	"github.com/aupguard/aupguard/internal/engine/policy"
	"github.com/aupguard/aupguard/internal/mailaddr"
)

// ListedURL is the listed_url check: the message's links are extracted as
// the body streams (package links: MIME decoding, text and HTML parts,
// redirect-wrapped targets, registrable domains), and at end of message
// their hosts are looked up in the configured URI blocklists.
type ListedURL struct {
	cfg   URLsConfig
	lists *links.Lists
	log   *slog.Logger
}

// newLists builds the lookups of cfg; nil when no zone is configured.
func newLists(cfg URLsConfig, r links.Resolver) (*links.Lists, error) {
	if len(cfg.Zones) == 0 {
		return nil, nil
	}
	zs := make([]links.Zone, len(cfg.Zones))
	for i, z := range cfg.Zones {
		zs[i] = links.Zone{Zone: z.Zone, Kind: links.Kind(z.Kind), Mask: z.Mask}
	}
	return links.NewLists(links.Config{Zones: zs, MaxLookups: cfg.MaxLookups, Concurrency: cfg.Concurrency, Timeout: cfg.Timeout}, r)
}

// nopResolver lets the config be validated without a resolver.
type nopResolver struct{}

func (nopResolver) LookupIPAddr(context.Context, string) ([]net.IPAddr, error) {
	return nil, errors.New("no resolver")
}

// NewListedURL builds listed_url asking through r; no zones make a check
// that asks for no body and finds nothing.
func NewListedURL(cfg URLsConfig, r links.Resolver, log *slog.Logger) (*ListedURL, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	l, err := newLists(cfg, r)
	if err != nil {
		return nil, err
	}
	return &ListedURL{cfg: cfg, lists: l, log: log}, nil
}

// Name implements policy.Check.
func (*ListedURL) Name() string { return ListedCheck }

// listedOf is listed_url's scan of the message: its links and, once
// started, their lookups.
var listedOf = policy.NewState[*listedScan]()

// listedScan is one message's links and, once started, their lookups.
type listedScan struct {
	e       *links.Extractor
	started bool
	res     chan links.Result // nil when there was nothing to look up
	cancel  context.CancelFunc
}

// Body implements policy.BodyChecker: an Extractor fed the header fields
// now and the body chunks as they arrive.
func (l *ListedURL) Body(t *policy.Txn) io.Writer {
	if l.lists == nil {
		return nil
	}
	var own []string
	if t.Customer != nil {
		for _, d := range t.Customer.Domains {
			own = append(own, strings.TrimPrefix(d.String(), "*."))
		}
	}
	e := links.NewExtractor(links.Options{Own: own, MaxHosts: l.cfg.MaxHosts, MaxTextBytes: l.cfg.MaxTextBytes})
	for _, h := range t.Headers {
		e.Header(h.Name, h.Value)
	}
	listedOf.Set(t, &listedScan{e: e})
	return e
}

// StartEOM implements policy.EOMStarter: the message's links are final,
// and their lookups start in the background, bounded by the stage's
// context and the lists' own time-out; EOM waits for them.
func (l *ListedURL) StartEOM(ctx context.Context, t *policy.Txn) {
	sc, _ := listedOf.Get(t)
	if sc == nil || sc.started {
		return
	}
	sc.started = true
	_ = sc.e.Close()
	hosts := sc.e.Links().Hosts
	if len(hosts) == 0 {
		return
	}
	lctx, cancel := context.WithCancel(ctx)
	res := make(chan links.Result, 1)
	sc.res, sc.cancel = res, cancel
	go func() {
		res <- l.lists.Check(lctx, hosts)
	}()
}

// EOM implements policy.EOMChecker: the lookups' outcome (started here
// when the chain did not start them).
func (l *ListedURL) EOM(ctx context.Context, t *policy.Txn) ([]policy.Finding, error) {
	sc, _ := listedOf.Get(t)
	if sc == nil {
		return nil, nil
	}
	l.StartEOM(ctx, t)
	if sc.res == nil {
		return nil, nil
	}
	var res links.Result
	select {
	case res = <-sc.res:
	case <-ctx.Done():
		sc.cancel()
		res = <-sc.res // the lookups end at once with their context
	}
	sc.cancel()
	sc.res = nil
	for _, le := range res.Errors {
		l.log.Warn("listed_url lookup error", "ref", t.Ref, "domain", le.Domain, "zone", le.Zone, "code", le.Code, "error", le.Err)
	}
	if !res.Listed() {
		if res.Answered == 0 && len(res.Errors) > 0 {
			return nil, fmt.Errorf("listed_url: no blocklist answered (%d errors, first: %s %s: %s)", len(res.Errors), res.Errors[0].Domain, res.Errors[0].Zone, res.Errors[0].Err)
		}
		return nil, nil
	}
	first := res.Listings[0]
	return []policy.Finding{{
		Name:   FindingListedURL,
		Detail: fmt.Sprintf("links to %s listed by %s (%s, %s): %s", first.Domain, first.Zone, first.Code, first.Meaning, strconv.Quote(first.URL)),
		Action: policy.Reject,
		Reply:  listedReply(first.Domain),
		Attrs:  map[string]string{"domain": first.Domain, "zone": first.Zone, "code": first.Code, "listings": strconv.Itoa(len(res.Listings))},
	}}, nil
}

// Finish implements policy.Finisher: lookups started for a message that
// an earlier check refused (their outcome never read) are cancelled.
func (l *ListedURL) Finish(_ context.Context, t *policy.Txn, _ bool) {
	if sc, _ := listedOf.Get(t); sc != nil && sc.cancel != nil {
		sc.cancel()
	}
}

// listedReply names the listed domain (already reduced to a registrable
// ASCII domain or an IP address by package links).
func listedReply(domain string) policy.Reply {
	if _, err := mailaddr.NormalizeDomain(domain); err != nil && net.ParseIP(domain) == nil {
		return replyListed
	}
	r, err := policy.NewReply(550, "5.7.1", "Message refused: links to a listed domain ("+domain+")")
	if err != nil {
		return replyListed
	}
	return r
}
