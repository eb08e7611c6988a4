package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/aupguard/aupguard/internal/checks/optout"
	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/setup"
	"github.com/aupguard/aupguard/internal/observability/report"
	"github.com/aupguard/aupguard/internal/secrets"
	"github.com/aupguard/aupguard/internal/store"
)

func init() {
	register("report", "postmaster report (text, json, csv, html) over a period; -mail sends the daily reports", runReport)
}

func runReport(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "/etc/aupguard/aupguard.yaml", "config file")
	since := fs.String("since", "", "period back from now, e.g. 24h or 30d (default 24h)")
	from := fs.String("from", "", "start (2006-01-02 or RFC 3339)")
	to := fs.String("to", "", "end (2006-01-02 includes that day, or RFC 3339)")
	customer := fs.String("customer", "", "only this customer")
	format := fs.String("format", "text", "text, json, csv or html")
	out := fs.String("o", "", "write to FILE (default standard output)")
	mailIt := fs.Bool("mail", false, "mail the provider summary to provider.postmaster and each customer's report to its abuse_contact")
	dryRun := fs.Bool("n", false, "with -mail: show who would get what, send nothing")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: aupguard report -config FILE [-since 24h | -from DATE -to DATE] [-customer ID] [-format text|json|csv|html] [-o FILE]")
		fmt.Fprintln(stderr, "       aupguard report -config FILE -mail [-n] [-since 24h | -from DATE -to DATE]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 0 {
		fs.Usage()
		return 2
	}
	now := time.Now()
	start, until, err := report.ParseRange(*since, *from, *to, 24*time.Hour, now)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	cfg, h, rd, ok := openRecord(*path, stderr)
	if !ok {
		return 1
	}
	defer h.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// Standings (flag, complaint rate) live in the store: Redis always;
	// the memory store inside the running gateway, which answers them on
	// its admin API (the same figures the API and dashboard show), or in
	// the store file when the gateway is stopped.
	standing := report.OptOutStanding(h, cfg)
	if h.Backend != store.Redis {
		standing = memoryStanding(cfg, standing)
	}
	// Bounce rates and blocklist states: Redis, or the memory store's
	// snapshot (reputation.json under store.path).
	rep := report.ReputationOf(h, cfg)
	// The families' report sections, from a command's Host (no service
	// runs).
	host := setup.NewHost(&setup.Deps{Config: cfg, Store: h, Clock: clock.System{}, Logger: slog.New(slog.DiscardHandler)})
	if err := host.Setup(setup.Families()); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	sections := host.ReportSections()

	if *mailIt {
		msgs, err := report.DailyWithSections(ctx, rd, cfg, standing, rep, sections, start, until, now)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		if len(msgs) == 0 {
			fmt.Fprintln(stderr, "nothing to send: no provider.postmaster, and no customer report due")
			return 0
		}
		for _, m := range msgs {
			fmt.Fprintf(stdout, "%s: %s\n", m.To, m.Subject)
		}
		if *dryRun {
			return 0
		}
		mailer, err := report.NewMailer(cfg)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		// The gateway's secret stamps the mail, so that a relay running
		// aupguard does not refuse it as an unidentified client's.
		if key, ephemeral, err := secrets.Load(cfg.SecretFile, cfg.Store.Path); err != nil || ephemeral {
			if err == nil {
				err = errors.New("no secret_file and no store.path")
			}
			fmt.Fprintf(stderr, "warning: report mail not stamped as the gateway's own (%v): a relay running aupguard refuses it as an unidentified client's\n", err)
		} else {
			mailer.Secret = key
		}
		sent, err := mailer.Send(ctx, msgs, now)
		fmt.Fprintf(stdout, "sent %d of %d report(s) through %s:%d\n", sent, len(msgs), cfg.Reports.SMTP.Host, cfg.Reports.SMTP.Port)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		return 0
	}

	known := *customer == "" || *customer == "-"
	for _, c := range cfg.Customers {
		known = known || c.ID == *customer
	}
	if !known {
		fmt.Fprintf(stderr, "note: customer %q is not in %s; reporting what the record holds\n", *customer, cfg.File)
	}
	r, err := report.Build(ctx, rd, report.Options{Since: start, Until: until, Customer: *customer, Config: cfg, Top: cfg.Reports.Top, Standing: standing, Now: now, Reputation: rep, Sections: sections})
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	var buf bytes.Buffer
	if err := r.Write(&buf, *format); err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	if *out == "" {
		_, err = stdout.Write(buf.Bytes())
	} else {
		err = writeFileAtomic(*out, buf.Bytes())
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	return 0
}

// writeFileAtomic writes data to path through a temporary file, so a
// reader never sees half a report.
func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".report-*")
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(f.Name())
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return err
	}
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		os.Remove(f.Name())
		return err
	}
	return os.Rename(f.Name(), path)
}

// memoryStanding reads standings from the running gateway's admin API
// (GET /api/customers/{id}/flag with the admin token); when no gateway
// answers there, from the store file through direct.
func memoryStanding(cfg *config.Config, direct report.StandingFunc) report.StandingFunc {
	a := cfg.Admin
	tok, err := os.ReadFile(a.TokenFile)
	if a.Listen == "" || a.Listen == "off" || a.TokenFile == "" || err != nil {
		return direct
	}
	scheme := "http"
	if a.TLSCert != "" {
		scheme = "https"
	}
	client := &http.Client{Timeout: 10 * time.Second}
	if host, _, err := net.SplitHostPort(a.Listen); scheme == "https" && err == nil {
		if ip, err := netip.ParseAddr(host); err == nil && ip.IsLoopback() {
			// On loopback the certificate is often self-signed for another
			// name; nothing else can listen there, so it is not verified.
			client.Transport = &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // loopback only
		}
	}
	token := strings.TrimSpace(string(tok))
	return func(ctx context.Context, id string) (*optout.CustomerStatus, error) {
		u := scheme + "://" + a.Listen + "/api/customers/" + url.PathEscape(id) + "/flag"
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err != nil {
			return direct(ctx, id) // no gateway running: the store file is free
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("admin API %s: %s", u, resp.Status)
		}
		var st optout.CustomerStatus
		if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&st); err != nil {
			return nil, fmt.Errorf("admin API %s: %v", u, err)
		}
		return &st, nil
	}
}
