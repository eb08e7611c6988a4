package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/gateway"
)

func init() {
	register("explain", "run the whole chain on a message file and show every finding", runExplain)
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(s string) error { *m = append(*m, s); return nil }

func runExplain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("explain", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "/etc/aupguard/aupguard.yaml", "config file")
	cust := fs.String("customer", "", "customer id the message is attributed to (required)")
	from := fs.String("mail-from", "", "envelope sender (default: the From address; <> for a bounce)")
	client := fs.String("client", "", "SMTP client address")
	helo := fs.String("helo", "", "HELO name")
	asJSON := fs.Bool("json", false, "print one JSON object")
	adminURL := fs.String("admin", "", "explain through this gateway's admin API (default with the memory store: admin.listen's)")
	local := fs.Bool("local", false, "with the memory store, run here on the store's files instead of asking the running gateway (only when none runs)")
	var rcpts multiFlag
	fs.Var(&rcpts, "rcpt", "envelope recipient (repeatable; default: To and Cc)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *cust == "" || fs.NArg() != 1 {
		fmt.Fprintln(stderr, "usage: aupguard explain -config FILE -customer ID [-mail-from ADDR] [-rcpt ADDR]... [-json] MSG.eml")
		return 2
	}
	cfg, ok := loadConfig(*path, stderr)
	if !ok {
		return 1
	}
	data, err := os.ReadFile(fs.Arg(0))
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	in := gateway.ExplainInput{Customer: *cust, MailFrom: *from, Rcpts: rcpts, Helo: *helo, Message: bytes.NewReader(data)}
	if *client != "" {
		if in.Client, err = netip.ParseAddr(*client); err != nil {
			fmt.Fprintf(stderr, "-client: %v\n", err)
			return 2
		}
	}
	if *local && cfg.Store.Backend != "redis" && cfg.Admin.Listen != "off" {
		// The embedded store's files belong to a running gateway: reading
		// and closing them here would race its writes.
		if c, err := net.DialTimeout("tcp", cfg.Admin.Listen, time.Second); err == nil {
			c.Close()
			fmt.Fprintf(stderr, "aupguard explain: a gateway answers on admin.listen %s and its embedded store is in use by it: drop -local to ask it\n", cfg.Admin.Listen)
			return 1
		}
	}
	var res *gateway.ExplainResult
	// The memory store lives in the running gateway (its files are locked
	// and written by it): ask the gateway, which runs the dry run on its
	// own state. Without a running gateway, or with Redis, run it here.
	viaAPI := *adminURL != "" || (cfg.Store.Backend != "redis" && !*local)
	if viaAPI {
		res, err = explainViaAPI(cfg, *adminURL, in, bytes.NewReader(data))
		if errors.Is(err, syscall.ECONNREFUSED) && *adminURL == "" {
			fmt.Fprintf(stderr, "no gateway answers on admin.listen %s: explaining with the store's files here\n", cfg.Admin.Listen)
			viaAPI = false
		} else if err != nil {
			fmt.Fprintf(stderr, "aupguard explain: %v\n", err)
			return 1
		}
	}
	if !viaAPI {
		deps, err := gateway.OpenDeps(cfg, nil, nil)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		defer deps.Store.Close()
		st, err := gateway.Build(deps)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		if res, err = gateway.Explain(context.Background(), st, in); err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(res)
		return 0
	}
	fmt.Fprintf(stdout, "customer %s (mode %s)\n", res.Customer, res.Mode)
	for _, c := range res.Checks {
		line := fmt.Sprintf("  %-5s %-18s %-28s %-10s", c.Stage, c.Name, c.Finding, c.Action)
		if c.Rcpt != "" {
			line += " rcpt=" + c.Rcpt
		}
		if c.Detail != "" {
			line += "  " + c.Detail
		}
		fmt.Fprintln(stdout, line)
	}
	if len(res.Checks) == 0 {
		fmt.Fprintln(stdout, "  no findings")
	}
	for r, rep := range res.RcptRefused {
		fmt.Fprintf(stdout, "recipient %s refused: %s\n", r, rep)
	}
	for _, h := range res.Added {
		fmt.Fprintf(stdout, "would add header %s\n", h.Name)
	}
	fmt.Fprintf(stdout, "verdict: %s", res.Action)
	if res.Code != 0 {
		fmt.Fprintf(stdout, " %d %s %s", res.Code, res.Enhanced, res.Text)
	}
	if res.Effective != res.Action {
		fmt.Fprintf(stdout, " (monitor mode: %s)", res.Effective)
	}
	fmt.Fprintln(stdout)
	return 0
}

// explainViaAPI posts the message to the running gateway's /api/explain.
func explainViaAPI(cfg *config.Config, adminURL string, in gateway.ExplainInput, msg io.Reader) (*gateway.ExplainResult, error) {
	api, err := newAPIDirectory(cfg, adminURL)
	if err != nil {
		return nil, err
	}
	q := url.Values{"customer": {in.Customer}}
	if in.MailFrom != "" {
		q.Set("mail_from", in.MailFrom)
	}
	for _, r := range in.Rcpts {
		q.Add("rcpt", r)
	}
	if in.Client.IsValid() {
		q.Set("client", in.Client.String())
	}
	if in.Helo != "" {
		q.Set("helo", in.Helo)
	}
	req, err := http.NewRequest(http.MethodPost, api.base+"/api/explain?"+q.Encode(), msg)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+api.token)
	req.Header.Set("Content-Type", "message/rfc822")
	resp, err := api.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("admin API: %w", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal(b, &e)
		return nil, fmt.Errorf("admin API: %s: %s", resp.Status, e.Error)
	}
	var res gateway.ExplainResult
	if err := json.Unmarshal(b, &res); err != nil {
		return nil, fmt.Errorf("admin API: %w", err)
	}
	return &res, nil
}
