package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"

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
	f, err := os.Open(fs.Arg(0))
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	defer f.Close()
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
	in := gateway.ExplainInput{Customer: *cust, MailFrom: *from, Rcpts: rcpts, Helo: *helo, Message: f}
	if *client != "" {
		if in.Client, err = netip.ParseAddr(*client); err != nil {
			fmt.Fprintf(stderr, "-client: %v\n", err)
			return 2
		}
	}
	res, err := gateway.Explain(context.Background(), st, in)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
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
