package optout

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"net/mail"
	"strings"

	"github.com/aupguard/aupguard/internal/engine/setup"
	"github.com/aupguard/aupguard/internal/store"
)

func runComplaint(env *setup.Env, args []string) int {
	stdout, stderr := env.Stdout, env.Stderr
	if len(args) == 0 || args[0] != "import" {
		fmt.Fprintln(stderr, "usage: aupguard complaint import [-config FILE] [-reporter NAME] FILE|-   (one ARF message, or an mbox of them)")
		return 2
	}
	fs := flag.NewFlagSet("complaint import", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "/etc/aupguard/aupguard.yaml", "config file")
	reporter := fs.String("reporter", "", "the feedback loop or mailbox the reports came from: the per-reporter hourly cap counts against it (default: each report's From domain)")
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
	svc, closeFn, err := openOptout(env, *cfgPath)
	if err != nil {
		fmt.Fprintf(stderr, "aupguard complaint import: %v\n", err)
		return 2
	}
	defer closeFn()
	var n, failed, storeDown, refused, counted, duplicates, notCounted, suppressed int
	err = SplitMboxLines(in, func(msg []byte, line int, err error) error {
		n++
		if err != nil {
			failed++
			fmt.Fprintf(stderr, "%s: report %d (line %d): not recorded: %v\n", name, n, line, err)
			return nil
		}
		res, err := svc.ComplaintFrom(context.Background(), *reporter, bytes.NewReader(msg))
		switch {
		case errors.Is(err, ErrRefused):
			refused++
			fmt.Fprintf(stderr, "%s: report %d (line %d%s): refused, not recorded: %v\n", name, n, line, messageID(msg), err)
			return nil
		case err != nil:
			failed++
			if errors.Is(err, store.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) {
				storeDown++
			}
			fmt.Fprintf(stderr, "%s: report %d (line %d%s): not recorded: %v\n", name, n, line, messageID(msg), err)
			return nil
		}
		suppressed += res.Added
		what := "counted"
		switch {
		case res.Counted:
			counted++
		case res.Duplicate:
			duplicates++
			what = "not counted (already counted for this message and recipient)"
		default:
			notCounted++
			what = "not counted (" + res.FeedbackType + ")"
		}
		fmt.Fprintf(stdout, "report %d (line %d%s): customer %s (by %s), %s, %d recipient(s) %s, %d newly suppressed, %s\n",
			n, line, messageID(msg), res.Customer, res.CustomerBy, res.FeedbackType, len(res.RcptHashes), strings.Join(res.RcptHashes, ","), res.Added, what)
		return nil
	})
	if err != nil {
		fmt.Fprintf(stderr, "aupguard complaint import: reading %s after report %d: %v\n", name, n, err)
	}
	// The summary says exactly what was recorded: every report is counted
	// once, as recorded (counted, duplicate or not counted), refused or
	// failed.
	fmt.Fprintf(stdout, "%d report(s): %d recorded (%d complaint(s) counted, %d duplicate(s), %d not counted), %d refused and %d failed, not recorded; %d recipient(s) newly suppressed\n",
		n, counted+duplicates+notCounted, counted, duplicates, notCounted, refused, failed, suppressed)
	switch {
	case err != nil:
		return 2
	case storeDown > 0:
		// EX_TEMPFAIL (sysexits.h): an MTA piping a mailbox in retries
		// later; importing the input again is safe, what was recorded
		// is then a duplicate.
		fmt.Fprintf(stderr, "aupguard complaint import: %d report(s) not recorded because the store is unavailable; import the input again later (what was recorded counts once)\n", storeDown)
		return 75
	case failed > 0 || refused > 0:
		return 1
	}
	return 0
}

// messageID returns ", Message-ID <...>" of a report, to name it, or "".
func messageID(msg []byte) string {
	m, err := mail.ReadMessage(bytes.NewReader(msg))
	if err != nil {
		return ""
	}
	if id := strings.TrimSpace(m.Header.Get("Message-Id")); id != "" && len(id) < 200 {
		return ", Message-ID " + id
	}
	return ""
}
