package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/aupguard/aupguard/optout"
)

func init() {
	register("complaint", "ingest ARF complaint reports (complaint import FILE|-)", runComplaint)
}

func runComplaint(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "import" {
		fmt.Fprintln(stderr, "usage: aupguard complaint import [-config FILE] FILE|-   (one ARF message, or an mbox of them)")
		return 2
	}
	fs := flag.NewFlagSet("complaint import", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "/etc/aupguard/aupguard.yaml", "config file")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "aupguard complaint import: give one FILE, or - for standard input")
		return 2
	}
	name := fs.Arg(0)
	in, closeIn, err := openIn(name)
	if err != nil {
		fmt.Fprintf(stderr, "aupguard complaint import: %v\n", err)
		return 2
	}
	defer closeIn()
	svc, closeFn, err := openOptout(*cfgPath)
	if err != nil {
		fmt.Fprintf(stderr, "aupguard complaint import: %v\n", err)
		return 2
	}
	defer closeFn()
	n, failed := 0, 0
	err = optout.SplitMbox(in, func(msg []byte) error {
		n++
		res, err := svc.Complaint(context.Background(), bytes.NewReader(msg))
		if err != nil {
			failed++
			fmt.Fprintf(stderr, "%s: report %d: %v\n", name, n, err)
			return nil
		}
		what := "counted"
		if !res.Counted {
			what = "not counted (" + res.FeedbackType + ")"
		}
		fmt.Fprintf(stdout, "report %d: customer %s (by %s), %s, %d recipient(s) %s, %d newly suppressed, %s\n",
			n, res.Customer, res.CustomerBy, res.FeedbackType, len(res.RcptHashes), strings.Join(res.RcptHashes, ","), res.Added, what)
		return nil
	})
	if err != nil {
		fmt.Fprintf(stderr, "aupguard complaint import: %v\n", err)
		return 2
	}
	fmt.Fprintf(stdout, "%d report(s), %d failed\n", n, failed)
	if failed > 0 {
		return 1
	}
	return 0
}
