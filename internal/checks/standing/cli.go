package standing

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/user"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/setup"
)

// Commands are the family's CLI: suspend, resume and standing, each
// through the running gateway's admin API (the stops take effect on every
// gateway of the store; with the memory store only the gateway can
// change them).
var Commands = []setup.Command{
	{Name: "suspend", Summary: "stop a reseller's, customer's or login's mail (suspend reseller|customer|login ID -action hold|defer|reject -reason TEXT [-until T])", Run: runSuspend},
	{Name: "resume", Summary: "lift a stop (resume reseller|customer|login ID [-source optout])", Run: runResume},
	{Name: "standing", Summary: "list every stopped sender and flag, and why (standing [-json])", Run: runList},
}

const suspendUsage = `usage: aupguard suspend reseller|customer|login ID -action hold|defer|reject -reason TEXT [-until 2h|RFC3339] [-config FILE] [-admin URL]`

// client talks to a gateway's admin API.
type client struct {
	base, token string
	http        *http.Client
}

func newClient(cfg *config.Config, adminURL string) (*client, error) {
	if cfg.Admin.TokenFile == "" {
		return nil, errors.New("admin.token_file is not set: the stops are changed through the gateway's admin API")
	}
	tok, err := os.ReadFile(cfg.Admin.TokenFile)
	if err != nil {
		return nil, fmt.Errorf("admin.token_file: %w", err)
	}
	c := &client{base: strings.TrimRight(adminURL, "/"), token: strings.TrimSpace(string(tok)), http: &http.Client{Timeout: 30 * time.Second}}
	if c.base == "" {
		if cfg.Admin.Listen == "off" {
			return nil, errors.New("admin.listen is off: start the admin API or give -admin URL")
		}
		scheme := "http"
		if cfg.Admin.TLSCert != "" {
			scheme = "https"
			pem, err := os.ReadFile(cfg.Admin.TLSCert)
			if err != nil {
				return nil, fmt.Errorf("admin.tls_cert: %w", err)
			}
			pool := x509.NewCertPool()
			pool.AppendCertsFromPEM(pem)
			c.http.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
		}
		c.base = scheme + "://" + cfg.Admin.Listen
	}
	return c, nil
}

func (c *client) do(method, path string, body any, out any) error {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(context.Background(), method, c.base+path, r)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Aupguard-Via", "cli")
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("admin API: %w", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if resp.StatusCode >= 300 {
		var e struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal(b, &e)
		if e.Error == "" {
			e.Error = resp.Status
		}
		return fmt.Errorf("admin API: %s (%d)", e.Error, resp.StatusCode)
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

// commonFlags are the flags of every standing command.
func commonFlags(name string, env *setup.Env) (*flag.FlagSet, *string, *string) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	cfgPath := fs.String("config", "/etc/aupguard/aupguard.yaml", "config file")
	adminURL := fs.String("admin", "", "the gateway's admin URL (default: from admin.listen)")
	return fs, cfgPath, adminURL
}

// scopeAndID reads the leading SCOPE ID arguments (flags may follow).
func scopeAndID(args []string) (Scope, string, []string, error) {
	if len(args) < 2 || strings.HasPrefix(args[0], "-") || strings.HasPrefix(args[1], "-") {
		return "", "", nil, errors.New("give the scope (reseller, customer or login) and the ID first")
	}
	sc, err := ParseScope(args[0])
	if err != nil {
		return "", "", nil, err
	}
	if err := ValidID(args[1]); err != nil {
		return "", "", nil, err
	}
	return sc, args[1], args[2:], nil
}

func connect(env *setup.Env, cfgPath, adminURL string) (*client, bool) {
	cfg, ok := env.LoadConfig(cfgPath)
	if !ok {
		return nil, false
	}
	c, err := newClient(cfg, adminURL)
	if err != nil {
		fmt.Fprintf(env.Stderr, "aupguard: %v\n", err)
		return nil, false
	}
	return c, true
}

func runSuspend(args []string, env *setup.Env) int {
	sc, id, rest, err := scopeAndID(args)
	if err != nil {
		fmt.Fprintf(env.Stderr, "aupguard suspend: %v\n%s\n", err, suspendUsage)
		return 2
	}
	fs, cfgPath, adminURL := commonFlags("suspend", env)
	action := fs.String("action", "", "hold, defer or reject")
	reason := fs.String("reason", "", "why (shown to the customer in defer and reject replies)")
	until := fs.String("until", "", "end: a duration (2h) or an RFC 3339 time; default: until resumed")
	if err := fs.Parse(rest); err != nil || fs.NArg() != 0 {
		fmt.Fprintln(env.Stderr, suspendUsage)
		return 2
	}
	q := Request{Scope: string(sc), ID: id, Action: *action, Reason: *reason, Until: *until}
	if u, err := user.Current(); err == nil {
		q.Who = u.Username
	}
	if _, err := q.Build("cli", time.Now()); err != nil {
		fmt.Fprintf(env.Stderr, "aupguard suspend: %v\n", err)
		return 2
	}
	c, ok := connect(env, *cfgPath, *adminURL)
	if !ok {
		return 2
	}
	var e Entry
	if err := c.do(http.MethodPost, "/api/standing", q, &e); err != nil {
		fmt.Fprintf(env.Stderr, "aupguard suspend: %v\n", err)
		return 1
	}
	end := "until resumed"
	if !e.Until.IsZero() {
		end = "until " + e.Until.UTC().Format(time.RFC3339)
	}
	fmt.Fprintf(env.Stdout, "%s %s stopped: %s, %s (%s)\n", e.Scope, e.ID, e.Action, end, e.Reason)
	return 0
}

func runResume(args []string, env *setup.Env) int {
	sc, id, rest, err := scopeAndID(args)
	if err != nil {
		fmt.Fprintf(env.Stderr, "aupguard resume: %v\nusage: aupguard resume reseller|customer|login ID [-source optout] [-config FILE]\n", err)
		return 2
	}
	fs, cfgPath, adminURL := commonFlags("resume", env)
	source := fs.String("source", "", "clear another family's flag instead (optout)")
	if err := fs.Parse(rest); err != nil || fs.NArg() != 0 {
		return 2
	}
	c, ok := connect(env, *cfgPath, *adminURL)
	if !ok {
		return 2
	}
	path := "/api/standing/" + url.PathEscape(string(sc)) + "/" + url.PathEscape(id)
	if *source != "" {
		path += "?source=" + url.QueryEscape(*source)
	}
	if err := c.do(http.MethodDelete, path, nil, nil); err != nil {
		fmt.Fprintf(env.Stderr, "aupguard resume: %v\n", err)
		return 1
	}
	fmt.Fprintf(env.Stdout, "%s %s resumed\n", sc, id)
	return 0
}

func runList(args []string, env *setup.Env) int {
	fs, cfgPath, adminURL := commonFlags("standing", env)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 {
		return 2
	}
	c, ok := connect(env, *cfgPath, *adminURL)
	if !ok {
		return 2
	}
	var l Listing
	if err := c.do(http.MethodGet, "/api/standing", nil, &l); err != nil {
		fmt.Fprintf(env.Stderr, "aupguard standing: %v\n", err)
		return 1
	}
	if *asJSON {
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(l)
		return 0
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SCOPE\tID\tACTION\tSOURCE\tSINCE\tUNTIL\tWHO\tREASON")
	for _, e := range l.Stops {
		act := string(e.Action)
		if act == "" {
			act = "flag"
		}
		if !e.Active {
			act += " (ended)"
		}
		until := "-"
		if !e.Until.IsZero() {
			until = e.Until.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Scope, e.ID, act, e.Source, e.When.UTC().Format(time.RFC3339), until, e.Who, e.Reason)
	}
	_ = tw.Flush()
	for _, s := range l.Errors {
		fmt.Fprintf(env.Stderr, "aupguard standing: the %s flags could not be read\n", s)
	}
	return 0
}
