package report

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Formats are the report formats.
var Formats = []string{"text", "json", "csv", "html"}

// ContentType returns the MIME type of a format.
func ContentType(format string) string {
	switch format {
	case "json":
		return "application/json"
	case "csv":
		return "text/csv; charset=utf-8"
	case "html":
		return "text/html; charset=utf-8"
	}
	return "text/plain; charset=utf-8"
}

// Write renders r in format to w.
func (r *Report) Write(w io.Writer, format string) error {
	switch format {
	case "text", "":
		return r.WriteText(w)
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	case "csv":
		return r.WriteCSV(w)
	case "html":
		return r.WriteHTML(w, HTMLOptions{})
	}
	return fmt.Errorf("unknown report format %q (want %s)", format, strings.Join(Formats, ", "))
}

// WriteText renders r as plain text (the mail's text part).
func (r *Report) WriteText(w io.Writer) error {
	ew := &errWriter{w: w}
	p := func(format string, args ...any) { fmt.Fprintf(ew, format, args...) }
	p("%s\n%s\n\n", r.Title(), strings.Repeat("=", len(r.Title())))
	t := r.Totals
	p("Messages     %d (%d recipients, %s)\n", t.Messages, t.Recipients, humanBytes(t.Bytes))
	p("Accepted     %d\n", t.Accepted)
	p("Held         %d\n", t.Held)
	p("Deferred     %d\n", t.Deferred)
	p("Rejected     %d\n", t.Rejected)
	p("Recipients refused at RCPT  %d\n", t.RcptRefused)
	if t.WouldRefuse > 0 {
		p("Monitor mode: %d messages accepted that enforcement would have stopped\n", t.WouldRefuse)
	}
	table := func(title string, header string, rows [][]string) {
		if len(rows) == 0 {
			return
		}
		p("\n%s\n%s\n", title, strings.Repeat("-", len(title)))
		tw := tabwriter.NewWriter(ew, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, header)
		for _, row := range rows {
			fmt.Fprintln(tw, strings.Join(row, "\t"))
		}
		tw.Flush()
	}
	i64 := func(n int64) string { return strconv.FormatInt(n, 10) }
	if r.Customer == "" {
		var rows [][]string
		for _, c := range r.TopOffenders {
			rows = append(rows, []string{customerLabel(c.ID), i64(c.Stopped), pct(c.Stopped, c.Messages+c.RcptRefused), i64(c.WouldRefuse), topFinding(c)})
		}
		table("Top offenders", "CUSTOMER\tSTOPPED\tSHARE\tMONITOR\tMAIN REASON", rows)
		rows = nil
		for _, c := range r.Customers {
			rows = append(rows, []string{customerLabel(c.ID), i64(c.Messages), i64(c.Recipients), i64(c.Accepted), i64(c.Held), i64(c.Deferred), i64(c.Rejected), i64(c.RcptRefused), i64(c.WouldRefuse), i64(c.Spikes), i64(c.LimitHits)})
		}
		table("By customer", "CUSTOMER\tMESSAGES\tRCPTS\tACCEPTED\tHELD\tDEFERRED\tREJECTED\tRCPT REFUSED\tMONITOR\tSPIKES\tLIMIT HITS", rows)
	}
	var rows [][]string
	for _, c := range r.Checks {
		rows = append(rows, []string{c.Check, c.Finding, i64(c.Reject), i64(c.Defer), i64(c.Quarantine), i64(c.Accept), i64(c.Monitor), i64(c.Findings)})
	}
	table("By check", "CHECK\tFINDING\tREJECT\tDEFER\tHOLD\tACCEPT\tMONITOR\tSEEN", rows)
	rows = nil
	for _, m := range r.Spikes {
		rows = append(rows, []string{m.Time.Format("2006-01-02 15:04"), customerLabel(m.Customer), i64(m.Count)})
	}
	table("Volume spikes", "TIME (UTC)\tCUSTOMER\tFINDINGS", rows)
	rows = nil
	for _, m := range r.LimitHits {
		rows = append(rows, []string{m.Time.Format("2006-01-02 15:04"), customerLabel(m.Customer), m.Kind, i64(m.Count)})
	}
	table("Limits reached", "TIME (UTC)\tCUSTOMER\tLIMIT\tCOUNT", rows)
	rows = nil
	for _, o := range r.OptOut {
		rows = append(rows, append([]string{customerLabel(o.Customer), i64(o.OptedOut), i64(o.Suppressed), i64(o.Escalated)}, standingCells(o)...))
	}
	table("Opt-outs and complaints", "CUSTOMER\tTO OPTED-OUT\tTO SUPPRESSED\tESCALATIONS\tFLAG\tCOMPLAINTS\tCOMPLAINT RATE", rows)
	rows = nil
	for _, o := range r.OptOutSources {
		row := []string{customerLabel(o.Customer)}
		for _, n := range o.Counts {
			row = append(row, i64(n))
		}
		rows = append(rows, append(row, i64(o.Total)))
	}
	table("Opt-outs recorded by source (since the list began)", "CUSTOMER\tUNSUBSCRIBE LINK\tCOMPLAINT\tAPI\tCLI\tIMPORT\tTOTAL", rows)
	rows = nil
	for _, d := range r.DMARC {
		rows = append(rows, []string{d.Domain, customerLabel(d.Customer), d.Finding, i64(d.Count)})
	}
	table("DMARC failures by domain", "DOMAIN\tCUSTOMER\tFINDING\tCOUNT", rows)
	rows = nil
	for _, b := range r.Bounces {
		rows = append(rows, bounceCells(b))
	}
	table("Bounce rates (current window)", "CUSTOMER\tSENT\tHARD\tPOLICY\tOTHER\tDEFERRED\tHARD RATE\tLEVEL\tOUTCOME", rows)
	rows = nil
	for _, l := range r.Blocklists {
		rows = append(rows, listingCells(l))
	}
	table("Blocklists", "ADDRESS\tZONE\tSTATE\tSINCE (UTC)\tLAST CHECK\tNOTE", rows)
	if r.Customer == "" {
		for _, c := range r.Customers {
			if len(c.Findings) == 0 {
				continue
			}
			rows = nil
			for _, f := range c.Findings {
				rows = append(rows, []string{f.Check, f.Finding, i64(f.Count)})
			}
			table("Detail: "+customerLabel(c.ID), "CHECK\tFINDING\tDECISIONS", rows)
		}
	}
	for _, e := range r.Errors {
		p("\nnote: %s\n", e)
	}
	p("\nGenerated %s.\n", r.Generated.Format(time.RFC1123))
	return ew.err
}

// standingCells renders an opt-out row's standing.
func standingCells(o OptOutRow) []string {
	st := o.Standing
	if st == nil {
		return []string{"-", "-", "-"}
	}
	flag := "no"
	if st.Flag != nil {
		flag = "FLAGGED: " + st.Flag.Reason
	}
	rate := "-"
	if st.Delivered > 0 {
		rate = fmt.Sprintf("%.3f%% (%s)", 100*st.ComplaintRate, st.RateLevel)
	} else if st.RateLevel != "" {
		rate = st.RateLevel
	}
	return []string{flag, fmt.Sprintf("%d/%d", st.Complaints, st.Delivered), rate}
}

func topFinding(c CustomerSummary) string {
	if len(c.Findings) == 0 {
		return "-"
	}
	return c.Findings[0].Check + "/" + c.Findings[0].Finding
}

// CSVHeader is the header row of the CSV format: one row per customer.
var CSVHeader = []string{"customer", "name", "messages", "recipients", "bytes", "accepted", "held", "deferred", "rejected",
	"recipients_refused", "monitor_would_refuse", "stopped", "spikes", "limit_hits", "opted_out_sends", "dmarc_failures",
	"complaints", "delivered", "complaint_rate", "flagged", "main_finding"}

// WriteCSV renders one row per customer (spreadsheet-ready); the details
// by check are in the JSON format.
func (r *Report) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	cw.Write(CSVHeader)
	opt := map[string]int64{}
	for _, o := range r.OptOut {
		opt[o.Customer] = o.OptedOut
	}
	dm := map[string]int64{}
	for _, d := range r.DMARC {
		dm[d.Customer] += d.Count
	}
	i64 := func(n int64) string { return strconv.FormatInt(n, 10) }
	for _, c := range r.Customers {
		complaints, delivered, rate, flagged := "", "", "", ""
		if st := c.Standing; st != nil {
			complaints, delivered = i64(st.Complaints), i64(st.Delivered)
			rate = strconv.FormatFloat(st.ComplaintRate, 'f', 6, 64)
			flagged = strconv.FormatBool(st.Flag != nil)
		}
		main := ""
		if len(c.Findings) > 0 {
			main = c.Findings[0].Check + "/" + c.Findings[0].Finding
		}
		cw.Write([]string{c.ID, c.Name, i64(c.Messages), i64(c.Recipients), i64(c.Bytes), i64(c.Accepted), i64(c.Held), i64(c.Deferred),
			i64(c.Rejected), i64(c.RcptRefused), i64(c.WouldRefuse), i64(c.Stopped), i64(c.Spikes), i64(c.LimitHits), i64(opt[c.ID]),
			i64(dm[c.ID]), complaints, delivered, rate, flagged, main})
	}
	cw.Flush()
	return cw.Error()
}

type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(p)
	e.err = err
	return n, err
}
