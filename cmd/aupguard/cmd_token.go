package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os/user"
	"regexp"
	"text/tabwriter"
	"time"

	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/observability/access"
	"github.com/aupguard/aupguard/internal/observability/audit"
	"github.com/aupguard/aupguard/internal/store"
)

func init() {
	register("token", "scoped access tokens for resellers and customers (token create|list|revoke); a token is shown once, at creation", runToken)
	register("audit", "the audit trail: changes made through the API, console and CLI (-since, -who)", runAudit)
}

// cliWho is the audit trail's name of the user running a command.
func cliWho() string {
	name := "unknown"
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	}
	if !regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`).MatchString(name) {
		name = "unknown"
	}
	return "cli:" + name
}

// tenancyClient is where the token and audit commands act: the shared
// store itself (Redis), or the running gateway's admin API (the memory
// store lives in the gateway's process).
type tenancyClient struct {
	api    *apiDirectory
	h      *store.Handle
	tokens *access.Tokens
	trail  *audit.Log
	cfg    *config.Config
}

func openTenancy(cfg *config.Config, adminURL string) (*tenancyClient, error) {
	if adminURL == "" && cfg.Store.Backend == store.Redis {
		h, err := store.Open(cfg.Store, clock.System{})
		if err != nil {
			return nil, err
		}
		ts, err := access.OpenTokens(h)
		if err != nil {
			h.Close()
			return nil, err
		}
		trail, err := audit.Open(h, clock.System{}, func() time.Duration { return cfg.Audit.Retention })
		if err != nil {
			h.Close()
			return nil, err
		}
		return &tenancyClient{h: h, tokens: access.NewTokens(ts, clock.System{}), trail: trail, cfg: cfg}, nil
	}
	api, err := newAPIDirectory(cfg, adminURL)
	if err != nil {
		return nil, err
	}
	return &tenancyClient{api: api, cfg: cfg}, nil
}

func (c *tenancyClient) close() {
	if c.h != nil {
		c.h.Close()
	}
}

// record writes a change made directly in the store to the audit trail.
func (c *tenancyClient) record(ctx context.Context, action, target, before, after string) error {
	return c.trail.Record(ctx, audit.Entry{Who: cliWho(), From: "cli", Action: action, Target: target, Before: before, After: after})
}

// knownTenant checks a token's scope against the directory (store path).
func (c *tenancyClient) knownTenant(ctx context.Context, kind, id string) error {
	if kind == access.KindReseller && c.cfg.Reseller(id) != nil {
		return nil
	}
	dir, err := openDirectory(c.cfg, "")
	if err != nil {
		return err
	}
	defer dir.close()
	es, _, err := dir.list(ctx)
	if err != nil {
		return err
	}
	for _, e := range es {
		if (kind == access.KindCustomer && e.Customer.ID == id) || (kind == access.KindReseller && e.Customer.Reseller == id) {
			return nil
		}
	}
	if kind == access.KindCustomer {
		return fmt.Errorf("customer %q: no such customer", id)
	}
	return fmt.Errorf("reseller %q: no such reseller", id)
}

func runToken(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: aupguard token create -name NAME (-customer ID | -reseller ID) [-expires 90d] | list | revoke NAME")
		return 2
	}
	sub := args[0]
	fs := flag.NewFlagSet("token "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "/etc/aupguard/aupguard.yaml", "config file")
	adminURL := fs.String("admin", "", "act through this gateway's admin API (default: the store itself with Redis, the admin API of admin.listen with the memory store)")
	name := fs.String("name", "", "the token's name (create)")
	cust := fs.String("customer", "", "scope the token to this customer (create)")
	res := fs.String("reseller", "", "scope the token to this reseller and its customers (create)")
	expires := fs.String("expires", "", "the token stops working after this long, e.g. 720h or 90d (create; default: never)")
	asJSON := fs.Bool("json", false, "print JSON (list)")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	cfg, ok := loadConfig(*cfgPath, stderr)
	if !ok {
		return 2
	}
	c, err := openTenancy(cfg, *adminURL)
	if err != nil {
		fmt.Fprintf(stderr, "aupguard token %s: %v\n", sub, err)
		return 2
	}
	defer c.close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	fail := func(err error) int {
		fmt.Fprintf(stderr, "aupguard token %s: %v\n", sub, err)
		return 1
	}
	switch sub {
	case "create":
		kind, id := access.KindCustomer, *cust
		if *res != "" {
			kind, id = access.KindReseller, *res
		}
		if (*res == "") == (*cust == "") {
			fmt.Fprintln(stderr, "aupguard token create: give -customer ID or -reseller ID")
			return 2
		}
		var out struct {
			Token  string       `json:"token"`
			Record access.Token `json:"record"`
		}
		if c.api != nil {
			body, _ := json.Marshal(map[string]string{"name": *name, kind: id, "expires": *expires})
			if err := c.api.do(ctx, "POST", "/api/tokens", body, &out); err != nil {
				return fail(err)
			}
		} else {
			var ttl time.Duration
			if *expires != "" {
				if ttl, err = parseDays(*expires); err != nil {
					return fail(err)
				}
			}
			if err := c.knownTenant(ctx, kind, id); err != nil {
				return fail(err)
			}
			if out.Token, out.Record, err = c.tokens.Create(ctx, *name, kind, id, ttl, cliWho()); err != nil {
				return fail(err)
			}
			after := kind + " " + id
			if !out.Record.Expires.IsZero() {
				after += ", expires " + out.Record.Expires.Format(time.RFC3339)
			}
			if err := c.record(ctx, "token.create", *name, "", after); err != nil {
				fmt.Fprintf(stderr, "aupguard token create: warning: the audit trail did not record it: %v\n", err)
			}
		}
		fmt.Fprintf(stderr, "token %s created for %s %s", out.Record.Name, out.Record.Kind, out.Record.ID)
		if !out.Record.Expires.IsZero() {
			fmt.Fprintf(stderr, ", expires %s", out.Record.Expires.UTC().Format(time.RFC3339))
		}
		fmt.Fprintln(stderr, "; it is shown this once (the store keeps only its digest):")
		fmt.Fprintln(stdout, out.Token)
		return 0
	case "list":
		var ts []access.Token
		if c.api != nil {
			var out struct {
				Tokens []access.Token `json:"tokens"`
			}
			if err := c.api.do(ctx, "GET", "/api/tokens", nil, &out); err != nil {
				return fail(err)
			}
			ts = out.Tokens
		} else if ts, err = c.tokens.Store.List(ctx); err != nil {
			return fail(err)
		}
		for i := range ts {
			ts[i].Hash = ""
		}
		if *asJSON {
			return printJSON(stdout, map[string]any{"tokens": ts})
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tSCOPE\tCREATED\tBY\tEXPIRES\tLAST USED")
		when := func(t time.Time) string {
			if t.IsZero() {
				return "-"
			}
			return t.UTC().Format(time.RFC3339)
		}
		for _, t := range ts {
			fmt.Fprintf(tw, "%s\t%s %s\t%s\t%s\t%s\t%s\n", t.Name, t.Kind, t.ID, when(t.Created), orDash(t.CreatedBy), when(t.Expires), when(t.LastUsed))
		}
		tw.Flush()
		return 0
	case "revoke":
		if fs.NArg() != 1 {
			fmt.Fprintln(stderr, "aupguard token revoke: give one token name")
			return 2
		}
		n := fs.Arg(0)
		if c.api != nil {
			if err := c.api.do(ctx, "DELETE", "/api/tokens/"+url.PathEscape(n), nil, nil); err != nil {
				return fail(err)
			}
		} else {
			t, err := c.tokens.Store.Revoke(ctx, n)
			if err != nil {
				return fail(err)
			}
			if err := c.record(ctx, "token.revoke", t.Name, t.Kind+" "+t.ID, "revoked"); err != nil {
				fmt.Fprintf(stderr, "aupguard token revoke: warning: the audit trail did not record it: %v\n", err)
			}
		}
		fmt.Fprintf(stdout, "token %s revoked: every gateway sharing the store refuses it from now on\n", n)
		return 0
	}
	fmt.Fprintf(stderr, "aupguard token: unknown subcommand %q (create, list, revoke)\n", sub)
	return 2
}

// parseDays reads a duration, with "d" for days.
func parseDays(s string) (time.Duration, error) {
	var n int
	if _, err := fmt.Sscanf(s, "%dd", &n); err == nil && fmt.Sprintf("%dd", n) == s && n > 0 {
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%q: want a positive duration such as 720h or 90d", s)
	}
	return d, nil
}

func runAudit(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("audit", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "/etc/aupguard/aupguard.yaml", "config file")
	adminURL := fs.String("admin", "", "read through this gateway's admin API (default: the store itself with Redis, the admin API of admin.listen with the memory store)")
	since := fs.String("since", "7d", "how far back, e.g. 24h or 30d")
	who := fs.String("who", "", "only this actor's changes (a token's name, admin, or cli:USER)")
	limit := fs.Int("n", 100, "at most this many entries, newest first")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, ok := loadConfig(*cfgPath, stderr)
	if !ok {
		return 2
	}
	d, err := parseDays(*since)
	if err != nil {
		fmt.Fprintf(stderr, "aupguard audit: -since %v\n", err)
		return 2
	}
	c, err := openTenancy(cfg, *adminURL)
	if err != nil {
		fmt.Fprintf(stderr, "aupguard audit: %v\n", err)
		return 2
	}
	defer c.close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var es []audit.Entry
	if c.api != nil {
		q := url.Values{"since": {*since}, "limit": {fmt.Sprint(*limit)}}
		if *who != "" {
			q.Set("who", *who)
		}
		var out struct {
			Entries []audit.Entry `json:"entries"`
		}
		if err := c.api.do(ctx, "GET", "/api/audit?"+q.Encode(), nil, &out); err != nil {
			fmt.Fprintf(stderr, "aupguard audit: %v\n", err)
			return 1
		}
		es = out.Entries
	} else {
		es, err = c.trail.Entries(ctx, audit.Query{Since: time.Now().Add(-d), Who: *who, Limit: *limit})
		if err != nil {
			fmt.Fprintf(stderr, "aupguard audit: %v\n", err)
			return 1
		}
	}
	if *asJSON {
		if es == nil {
			es = []audit.Entry{}
		}
		return printJSON(stdout, map[string]any{"entries": es})
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tWHO\tFROM\tACTION\tTARGET\tBEFORE\tAFTER")
	for _, e := range es {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Time.UTC().Format(time.RFC3339), e.Who, e.From, e.Action, orDash(e.Target), orDash(short(e.Before)), orDash(short(e.After)))
	}
	tw.Flush()
	if len(es) == 0 {
		fmt.Fprintln(stdout, "(no change recorded)")
	}
	return 0
}

// short clips a summary for the table (-json prints it whole).
func short(s string) string {
	if len(s) > 60 {
		return s[:60] + "…"
	}
	return s
}

// recordCLI records a change a command made outside the admin API in the
// audit trail: in the store itself with Redis, through the running
// gateway's admin API with the memory store (which lives in its
// process). A failure is a warning on stderr: the change is made.
func recordCLI(cfg *config.Config, stderr io.Writer, action, target, before, after string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := openTenancy(cfg, "")
	if err == nil {
		defer c.close()
		if c.api != nil {
			body, _ := json.Marshal(audit.Entry{Action: action, Target: target, Before: before, After: after})
			err = c.api.do(ctx, "POST", "/api/audit", body, nil)
		} else {
			err = c.record(ctx, action, target, before, after)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "aupguard: warning: the audit trail did not record %s %s: %v\n", action, target, err)
	}
}
