package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/observability/events"
	"github.com/aupguard/aupguard/internal/observability/report"
	"github.com/aupguard/aupguard/internal/store"
)

func init() {
	register("events", "find decisions: by the reference id a customer quotes, by customer, by period", runEvents)
}

// openRecord loads the config and opens the decision record for reading:
// Redis directly; with the memory store, the events file the gateway
// appends to (events.file, or events.jsonl under store.path).
func openRecord(path string, stderr io.Writer) (*config.Config, *store.Handle, *events.Reader, bool) {
	cfg, ok := loadConfig(path, stderr)
	if !ok {
		return nil, nil, nil, false
	}
	h, err := store.Open(cfg.Store, clock.System{})
	if err != nil {
		fmt.Fprintf(stderr, "store: %v\n", err)
		return nil, nil, nil, false
	}
	rd, err := events.Open(h, cfg.Events)
	if err != nil {
		h.Close()
		fmt.Fprintf(stderr, "events: %v\n", err)
		return nil, nil, nil, false
	}
	return cfg, h, rd, true
}

func runEvents(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("events", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "/etc/aupguard/aupguard.yaml", "config file")
	customer := fs.String("customer", "", "only this customer (- for clients that are no customer)")
	since := fs.String("since", "", "period back from now, e.g. 24h or 7d (default: the whole retention)")
	from := fs.String("from", "", "start (2006-01-02 or RFC 3339)")
	to := fs.String("to", "", "end (2006-01-02 includes that day, or RFC 3339)")
	login := fs.String("login", "", "only this login (SASL, or the Unix login of local submission)")
	ref := fs.String("ref", "", "the reference id from an SMTP reply")
	limit := fs.Int("limit", 100, "most events shown (newest first)")
	asJSON := fs.Bool("json", false, "one JSON event per line")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: aupguard events -config FILE [-ref REF] [-customer ID] [-login LOGIN] [-since 24h | -from DATE -to DATE] [-limit N] [-json]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 0 {
		fs.Usage()
		return 2
	}
	q := events.Query{Ref: strings.TrimSpace(*ref), Customer: *customer, Login: *login, Limit: *limit}
	if *since != "" || *from != "" || *to != "" {
		var err error
		if q.Since, q.Until, err = report.ParseRange(*since, *from, *to, 24*time.Hour, time.Now()); err != nil {
			fmt.Fprintln(stderr, err)
			return 2
		}
	}
	_, h, rd, ok := openRecord(*path, stderr)
	if !ok {
		return 1
	}
	defer h.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	evs, err := rd.Events(ctx, q)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		for _, e := range evs {
			if err := enc.Encode(e); err != nil {
				fmt.Fprintln(stderr, err)
				return 1
			}
		}
	} else {
		printEvents(stdout, evs, q.Ref != "")
	}
	if len(evs) == 0 {
		fmt.Fprintln(stderr, "no matching event")
		if q.Ref != "" {
			return 1
		}
	}
	return 0
}

func printEvents(w io.Writer, evs []events.Event, detail bool) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME (UTC)\tREF\tQUEUE ID\tCUSTOMER\tLOGIN\tSTAGE\tFROM DOMAIN\tRCPTS\tACTION\tCHECK/FINDING\tREPLY\tMODE")
	for _, e := range evs {
		action := e.Effective
		if e.Action != e.Effective {
			action += " (would " + e.Action + ")"
		}
		cf := "-"
		if e.Check != "" {
			cf = e.Check + "/" + e.Finding
		}
		reply := "-"
		if e.Code != 0 {
			reply = fmt.Sprintf("%d %s", e.Code, e.Enhanced)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", e.Time.UTC().Format("2006-01-02 15:04:05"), e.Ref, dash(e.QueueID),
			e.CustomerOf(), dash(e.Login), e.Stage, dash(e.SenderDomain), e.Rcpts, action, cf, reply, e.Mode)
	}
	tw.Flush()
	if !detail {
		return
	}
	// For a reference id, everything the postmaster needs to answer.
	for _, e := range evs {
		fmt.Fprintf(w, "\n%s %s at %s:\n", e.Ref, e.Stage, e.Time.UTC().Format(time.RFC3339))
		fmt.Fprintf(w, "  client %s (identified by %s), size %d, %.1f ms\n", dash(e.Client), dash(e.By), e.Size, e.DurationMS)
		if e.Detail != "" {
			fmt.Fprintf(w, "  detail: %s\n", e.Detail)
		}
		for _, f := range e.Findings {
			fmt.Fprintf(w, "  finding %s/%s = %s", f.Check, f.Name, f.Action)
			keys := make([]string, 0, len(f.Attrs))
			for k := range f.Attrs {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				fmt.Fprintf(w, " %s=%s", k, f.Attrs[k])
			}
			fmt.Fprintln(w)
		}
		if len(e.RcptPlain) > 0 {
			fmt.Fprintf(w, "  recipients: %s\n", strings.Join(e.RcptPlain, ", "))
		} else if len(e.RcptHashes) > 0 {
			fmt.Fprintf(w, "  recipient hashes: %s\n", strings.Join(e.RcptHashes, ", "))
		}
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
