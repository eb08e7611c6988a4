package customer

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/aupguard/aupguard/internal/engine/config"
)

// The formats of a bulk import (ImportReader).
const (
	// FormatJSON is {"customers": [...]} or a bare [...] of definitions,
	// read element by element.
	FormatJSON = "json"
	// FormatNDJSON is one JSON definition per line.
	FormatNDJSON = "ndjson"
	// FormatYAML is one YAML document with a customers: list, as in the
	// config file; it cannot be read element by element, so it is
	// bounded to MaxYAMLImport bytes.
	FormatYAML = "yaml"
)

// The bounds of a bulk import: whatever the input, an import holds at most
// one entry being decoded (MaxEntryBytes) and the validated entries
// (MaxImportEntries, each at most MaxEntryBytes of JSON).
const (
	// MaxImportBody is the largest JSON or NDJSON import.
	MaxImportBody = 16 << 20
	// MaxYAMLImport is the largest YAML import (one document, decoded as
	// a whole: about 100 times its size in memory).
	MaxYAMLImport = 1 << 20
	// MaxImportEntries is the most customers one import may list.
	MaxImportEntries = 100_000
	// MaxEntryBytes is the largest single definition.
	MaxEntryBytes = 64 << 10
	// maxImportErrors caps the errors one refused import lists.
	maxImportErrors = 100
)

// ErrEntryTooLarge is wrapped by the error of a definition larger than
// MaxEntryBytes.
var ErrEntryTooLarge = fmt.Errorf("definition larger than %d bytes", MaxEntryBytes)

// ImportFormat maps a Content-Type (or a file name's extension) to a
// format: JSON, NDJSON (application/x-ndjson, .ndjson, .jsonl) or YAML
// (anything else, as the config file).
func ImportFormat(contentTypeOrName string) string {
	s := strings.ToLower(strings.TrimSpace(contentTypeOrName))
	if i := strings.IndexByte(s, ';'); i >= 0 {
		s = strings.TrimSpace(s[:i])
	}
	switch {
	case s == "application/x-ndjson" || s == "application/ndjson" || s == "application/jsonl" ||
		strings.HasSuffix(s, ".ndjson") || strings.HasSuffix(s, ".jsonl"):
		return FormatNDJSON
	case s == "application/json" || strings.HasSuffix(s, "+json") || strings.HasSuffix(s, ".json"):
		return FormatJSON
	}
	return FormatYAML
}

// ImportReader reads the definitions of a bulk import one at a time, in
// bounded memory. Next returns io.EOF after the last one; an error of one
// definition (unknown field, wrong type) is an *EntryError and reading
// may go on; any other error ends the stream.
type ImportReader struct {
	format string
	n      int // entries returned so far (the next one's index)

	// JSON
	guard   *guardReader
	dec     *json.Decoder
	started bool
	done    bool

	// NDJSON
	br   *bufio.Reader
	line int

	// YAML
	yamlRd   io.Reader
	yamlList []yaml.Node

	// raw is the last definition as compact JSON (nil: not JSON).
	raw []byte
}

// Raw returns the definition Next returned last as compact JSON, as
// given, when it was JSON (nil otherwise): the import stores it as is
// instead of encoding the definition again.
func (ir *ImportReader) Raw() []byte { return ir.raw }

// EntryError is the error of one definition of an import: its index in the
// list (from 0), the line where it starts when known, and what is wrong.
type EntryError struct {
	Index int
	Line  int
	Err   error
}

func (e *EntryError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("customers[%d] (line %d): %v", e.Index, e.Line, e.Err)
	}
	return fmt.Sprintf("customers[%d]: %v", e.Index, e.Err)
}

func (e *EntryError) Unwrap() error { return e.Err }

// NewImportReader reads r in format (FormatJSON, FormatNDJSON, FormatYAML).
func NewImportReader(r io.Reader, format string) *ImportReader {
	ir := &ImportReader{format: format}
	switch format {
	case FormatJSON:
		ir.guard = &guardReader{r: r, limit: MaxEntryBytes}
		ir.dec = json.NewDecoder(ir.guard)
	case FormatNDJSON:
		ir.br = bufio.NewReaderSize(r, 64<<10)
	default:
		ir.yamlRd = r
	}
	return ir
}

// guardReader fails a JSON element growing past limit: the decoder holds
// the element being decoded in its buffer, so the bytes delivered since
// the element began bound that buffer.
type guardReader struct {
	r     io.Reader
	limit int64
	total int64 // bytes delivered
	mark  int64 // offset where the current element begins
	dec   *json.Decoder
}

func (g *guardReader) Read(p []byte) (int, error) {
	if g.dec != nil {
		g.mark = g.dec.InputOffset()
	}
	room := g.mark + g.limit + 4096 - g.total
	if room <= 0 {
		return 0, ErrEntryTooLarge
	}
	if int64(len(p)) > room {
		p = p[:room]
	}
	n, err := g.r.Read(p)
	g.total += int64(n)
	return n, err
}

// Next returns the next definition.
func (ir *ImportReader) Next() (config.Customer, error) {
	if ir.n >= MaxImportEntries {
		// One more than allowed: refuse the import.
		if _, err := ir.next(); err == io.EOF {
			return config.Customer{}, io.EOF
		}
		return config.Customer{}, fmt.Errorf("more than %d customers in one import: split it", MaxImportEntries)
	}
	return ir.next()
}

func (ir *ImportReader) next() (config.Customer, error) {
	switch ir.format {
	case FormatJSON:
		return ir.nextJSON()
	case FormatNDJSON:
		return ir.nextNDJSON()
	}
	return ir.nextYAML()
}

// decodeEntry decodes one definition (JSON is YAML) as the index'th entry.
func (ir *ImportReader) decodeEntry(raw []byte, line int) (config.Customer, error) {
	i := ir.n
	ir.n++
	ir.raw = nil
	c, err := Decode(raw)
	if err != nil {
		return c, &EntryError{Index: i, Line: line, Err: err}
	}
	if ir.format != FormatYAML {
		var b bytes.Buffer
		if json.Compact(&b, raw) == nil {
			ir.raw = b.Bytes()
		}
	}
	return c, nil
}

func (ir *ImportReader) nextJSON() (config.Customer, error) {
	if ir.done {
		return config.Customer{}, io.EOF
	}
	if !ir.started {
		ir.started = true
		ir.guard.dec = ir.dec
		t, err := ir.dec.Token()
		if err != nil {
			return config.Customer{}, ir.jsonErr(err, "want {\"customers\": [...]} or [...]")
		}
		if t == json.Delim('{') {
			// The customers member, the object's only one.
			k, err := ir.dec.Token()
			if err != nil {
				return config.Customer{}, ir.jsonErr(err, "want a customers member")
			}
			if k == json.Delim('}') {
				return config.Customer{}, errors.New("customers: no customer listed")
			}
			if k != "customers" {
				return config.Customer{}, fmt.Errorf("unknown member %v (want customers)", k)
			}
			if t, err = ir.dec.Token(); err != nil {
				return config.Customer{}, ir.jsonErr(err, "customers: want a list")
			}
		}
		if t != json.Delim('[') {
			return config.Customer{}, errors.New("customers: want a list of definitions")
		}
	}
	if !ir.dec.More() {
		ir.done = true
		if ir.n == 0 {
			return config.Customer{}, errors.New("customers: no customer listed")
		}
		// The closing brackets and nothing after them.
		for {
			t, err := ir.dec.Token()
			if err == io.EOF {
				return config.Customer{}, io.EOF
			}
			if err != nil {
				return config.Customer{}, ir.jsonErr(err, "after the list")
			}
			if t != json.Delim(']') && t != json.Delim('}') {
				return config.Customer{}, fmt.Errorf("unexpected %v after the list", t)
			}
		}
	}
	var raw json.RawMessage
	if err := ir.dec.Decode(&raw); err != nil {
		// The stream cannot be read past a syntax error or an entry too
		// large to hold: the import ends here.
		return config.Customer{}, fmt.Errorf("customers[%d]: %w", ir.n, ir.jsonErr(err, ""))
	}
	return ir.decodeEntry(raw, 0)
}

func (ir *ImportReader) jsonErr(err error, want string) error {
	if errors.Is(err, ErrEntryTooLarge) {
		return err
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("JSON syntax error at byte %d: %w", se.Offset, err)
	}
	if err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) {
		err = errors.New("unexpected end of input")
	}
	if want != "" {
		return fmt.Errorf("%w (%s)", err, want)
	}
	return err
}

func (ir *ImportReader) nextNDJSON() (config.Customer, error) {
	for {
		line, err := ir.br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			ir.line++
			// Skip the rest of the line in bounded memory.
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = ir.br.ReadSlice('\n')
			}
			if err != nil && err != io.EOF {
				return config.Customer{}, err
			}
			i := ir.n
			ir.n++
			return config.Customer{}, &EntryError{Index: i, Line: ir.line, Err: ErrEntryTooLarge}
		}
		if len(line) > 0 {
			ir.line++
		}
		if err != nil && err != io.EOF {
			return config.Customer{}, err
		}
		if t := bytes.TrimSpace(line); len(t) > 0 {
			if len(t) > MaxEntryBytes {
				i := ir.n
				ir.n++
				return config.Customer{}, &EntryError{Index: i, Line: ir.line, Err: ErrEntryTooLarge}
			}
			return ir.decodeEntry(t, ir.line)
		}
		if err == io.EOF {
			if ir.n == 0 {
				return config.Customer{}, errors.New("customers: no customer listed")
			}
			return config.Customer{}, io.EOF
		}
	}
}

func (ir *ImportReader) nextYAML() (config.Customer, error) {
	if ir.yamlRd != nil {
		b, err := io.ReadAll(io.LimitReader(ir.yamlRd, MaxYAMLImport+1))
		ir.yamlRd = nil
		if err != nil {
			return config.Customer{}, err
		}
		if len(b) > MaxYAMLImport {
			return config.Customer{}, fmt.Errorf("YAML import larger than %d bytes: send JSON or NDJSON for more", MaxYAMLImport)
		}
		var doc struct {
			Customers []yaml.Node `yaml:"customers"`
		}
		if err := yaml.Unmarshal(b, &doc); err != nil {
			return config.Customer{}, fmt.Errorf("%s", strings.TrimPrefix(err.Error(), "yaml: "))
		}
		if len(doc.Customers) == 0 {
			return config.Customer{}, errors.New("customers: no customer listed")
		}
		ir.yamlList = doc.Customers
	}
	if ir.n >= len(ir.yamlList) {
		return config.Customer{}, io.EOF
	}
	node := &ir.yamlList[ir.n]
	b, err := yaml.Marshal(node)
	if err != nil {
		i := ir.n
		ir.n++
		return config.Customer{}, &EntryError{Index: i, Line: node.Line, Err: err}
	}
	return ir.decodeEntry(b, node.Line)
}
