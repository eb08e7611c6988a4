package optout

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/aupguard/aupguard/internal/mailaddr"
)

// importBatchEntries is how many entries are written (and, for the memory
// backend, fsynced) at once during an import.
const importBatchEntries = 5000

// maxReportedErrors caps the bad lines listed in an import result.
const maxReportedErrors = 1000

// LineError is one bad line of an import.
type LineError struct {
	Line  int    `json:"line"`
	Error string `json:"error"`
}

// ImportResult says what an import did. Good lines are kept even when
// others are bad.
type ImportResult struct {
	// Lines counts the data lines read (not the header row); every one is
	// Added, a Duplicate or Bad, so Lines = Added + Duplicates + Bad.
	Lines      int         `json:"lines"`
	Added      int         `json:"added"`
	Duplicates int         `json:"duplicates"`
	Bad        int         `json:"bad"`
	Errors     []LineError `json:"errors,omitempty"`
	// ErrorsTruncated is set when more bad lines were found than listed.
	ErrorsTruncated bool `json:"errors_truncated,omitempty"`
	// StoppedAtLine is set when the store failed part-way: the entries
	// of the lines before it were applied (Added or Duplicates), those of
	// this line and after were not. Lines then counts only the lines
	// before it, plus the bad lines found.
	StoppedAtLine int `json:"stopped_at_line,omitempty"`
}

// csvColumns are the columns of an export, and those an import reads.
var csvColumns = []string{"list", "address", "hash", "source", "time", "note"}

// Import reads CSV from r into list (a customer id or GlobalList; "" takes
// each line's list column). A header row naming the columns is optional:
// without one, the first column is the address and the second the note.
// An export is accepted as is, including entries that have only a hash.
// Each line's source is the import's, unless the line names one.
func (s *Service) Import(ctx context.Context, list string, r io.Reader, source string) (ImportResult, error) {
	im := &importer{s: s, ctx: ctx, batch: make([]Entry, 0, importBatchEntries)}
	if list != "" {
		if err := knownList(s.Config, list); err != nil {
			return im.res, badRequest(err)
		}
	}
	rr := newRecordReader(r)
	col := map[string]int{"address": 0, "note": 1}
	now := s.Clock.Now()
	first := true
	var src bytes.Reader
	for {
		// Each record is split off in bounded memory (recordReader), then
		// parsed on its own: a record never grows past MaxCSVRecord,
		// whatever the input.
		raw, start, end, tooLong, err := rr.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return im.res, err
		}
		if tooLong {
			first = false
			im.res.Lines++
			if start == end {
				im.bad(start, "line longer than %d bytes: not imported", MaxCSVRecord)
			} else {
				im.bad(start, "record of lines %d to %d longer than %d bytes (a quoted field not closed?): not imported", start, end, MaxCSVRecord)
			}
			continue
		}
		src.Reset(raw)
		cr := csv.NewReader(&src)
		cr.FieldsPerRecord = -1
		cr.TrimLeadingSpace = true
		rec, err := cr.Read()
		if err == io.EOF {
			continue // a blank line
		}
		if err != nil {
			var pe *csv.ParseError
			if !errors.As(err, &pe) {
				return im.res, err
			}
			// A line the CSV reader cannot split is a data line too:
			// Lines = Added + Duplicates + Bad, always.
			first = false
			im.res.Lines++
			im.syntaxError(pe, start, end)
			continue
		}
		line, _ := cr.FieldPos(0)
		line += start - 1
		if first {
			first = false
			if h := headerColumns(rec); h != nil {
				col = h
				continue
			}
		}
		im.res.Lines++
		e, err := s.csvEntry(rec, col, list, source, now)
		if err != nil {
			im.bad(line, "%v", err)
			continue
		}
		if err := im.add(line, e); err != nil {
			return im.res, err
		}
	}
	if err := im.flush(); err != nil {
		return im.res, err
	}
	s.Log.Info("opt-outs imported", "list", list, "lines", im.res.Lines, "added", im.res.Added, "bad", im.res.Bad)
	return im.res, nil
}

// importer is one Import run: its result so far and the entries waiting
// to be added in one store call.
type importer struct {
	s         *Service
	ctx       context.Context
	res       ImportResult
	batch     []Entry
	batchLine int // the line of batch[0]
}

// bad counts a bad line and keeps its error (up to maxReportedErrors).
func (im *importer) bad(line int, format string, args ...any) {
	im.res.Bad++
	if len(im.res.Errors) < maxReportedErrors {
		im.res.Errors = append(im.res.Errors, LineError{Line: line, Error: fmt.Sprintf(format, args...)})
	} else {
		im.res.ErrorsTruncated = true
	}
}

// syntaxError records a record the CSV reader cannot split, at the line of
// its real fault.
func (im *importer) syntaxError(pe *csv.ParseError, start, end int) {
	if pe.StartLine != pe.Line || (end > start && pe.Err == csv.ErrQuote) {
		// The real fault is where the quote was opened: a quoted field
		// that is never closed swallows the lines after it.
		im.bad(start+pe.StartLine-1, "CSV syntax: a quoted field opened on line %d is not closed properly; lines up to %d were read as part of it and not imported: %v", start+pe.StartLine-1, end, pe.Err)
		return
	}
	im.bad(start+pe.Line-1, "CSV syntax, column %d: %v", pe.Column, pe.Err)
}

// add queues the entry of a line and adds the batch when it is full.
func (im *importer) add(line int, e Entry) error {
	if len(im.batch) == 0 {
		im.batchLine = line
	}
	im.batch = append(im.batch, e)
	if len(im.batch) == importBatchEntries {
		return im.flush()
	}
	return nil
}

// flush adds the queued entries in one store call; when the store fails,
// the result says where the import stopped.
func (im *importer) flush() error {
	if len(im.batch) == 0 {
		return nil
	}
	bctx, cancel := context.WithTimeout(im.ctx, 30*time.Second)
	defer cancel()
	n, err := im.s.Backend.Add(bctx, im.batch)
	if err != nil {
		im.res.StoppedAtLine = im.batchLine
		im.res.Lines = im.res.Added + im.res.Duplicates + im.res.Bad
		return err
	}
	im.res.Added += n
	im.s.countOptOut(SourceImport, n)
	im.res.Duplicates += len(im.batch) - n
	im.batch = im.batch[:0]
	return nil
}

// csvEntry turns one data record into an entry (columns by col; list and
// source unless the record names its own), or says why the line is bad.
func (s *Service) csvEntry(rec []string, col map[string]int, list, source string, now time.Time) (Entry, error) {
	get := func(name string) string {
		if i, ok := col[name]; ok && i < len(rec) {
			return strings.TrimSpace(rec[i])
		}
		return ""
	}
	l := list
	if l == "" {
		l = get("list")
		if err := knownList(s.Config, l); err != nil {
			return Entry{}, err
		}
	}
	src := source
	if v := get("source"); v != "" {
		if !validSource(v) {
			return Entry{}, fmt.Errorf("unknown source %q", v)
		}
		src = v
	}
	if err := mailaddr.CheckText(get("note")); err != nil {
		return Entry{}, fmt.Errorf("note: %v", err)
	}
	var e Entry
	if addr := get("address"); addr != "" {
		c, err := s.Settings.Canonical(addr)
		if err != nil {
			return Entry{}, err
		}
		e = s.Settings.NewEntry(l, c, src, get("note"), now)
	} else if h := strings.ToLower(get("hash")); isHash(h) {
		e = Entry{List: l, Hash: h, Source: src, Time: now.UTC().Truncate(time.Second), Note: get("note")}
	} else {
		return Entry{}, errors.New("no address (and no 32-digit hash)")
	}
	if t := get("time"); t != "" {
		if ts, err := time.Parse(time.RFC3339, t); err == nil {
			e.Time = ts.UTC()
		}
	}
	if len(e.Note) > 500 {
		e.Note = e.Note[:500]
	}
	return e, nil
}

// headerColumns returns the column map of a header row, nil when rec is
// not one (it has no "address" or "hash" column).
func headerColumns(rec []string) map[string]int {
	m := map[string]int{}
	for i, f := range rec {
		m[strings.ToLower(strings.TrimSpace(strings.TrimPrefix(f, "\ufeff")))] = i
	}
	_, a := m["address"]
	_, h := m["hash"]
	_, e := m["email"]
	if e && !a {
		m["address"] = m["email"]
		a = true
	}
	if !a && !h {
		return nil
	}
	return m
}

// Export writes a list as CSV with a header row; the address column is
// empty unless plain addresses are kept.
func (s *Service) Export(ctx context.Context, list string, w io.Writer) (int, error) {
	if err := knownList(s.Config, list); err != nil {
		return 0, badRequest(err)
	}
	cw := csv.NewWriter(w)
	if err := cw.Write(csvColumns); err != nil {
		return 0, err
	}
	n := 0
	err := s.Backend.Scan(ctx, list, func(e Entry) error {
		n++
		return cw.Write([]string{e.List, e.Address, e.Hash, e.Source, e.Time.UTC().Format(time.RFC3339), e.Note})
	})
	cw.Flush()
	if err == nil {
		err = cw.Error()
	}
	return n, err
}
