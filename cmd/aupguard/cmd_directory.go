package main

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
	"strings"
	"text/tabwriter"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/customer"
	"github.com/aupguard/aupguard/internal/engine/gateway"
	"github.com/aupguard/aupguard/internal/store"
)

// directory is where the customer commands change the live directory: the
// shared store itself (Redis), or the running gateway's admin API (the
// memory store lives in the gateway's process).
type directory interface {
	list(ctx context.Context) ([]entryView, int64, error)
	get(ctx context.Context, id string) (entryView, error)
	add(ctx context.Context, def []byte) (customer.Change, error)
	set(ctx context.Context, id string, patch map[string]any) (customer.Change, error)
	remove(ctx context.Context, id string) (customer.Change, error)
	importList(ctx context.Context, in importInput, force bool) (customer.ImportResult, error)
	log(ctx context.Context, id string, limit int) ([]customer.Change, error)
	close()
}

// entryView is a customer as the commands print it.
type entryView struct {
	Customer map[string]any `json:"customer"`
	Source   string         `json:"source"`
	Shadows  bool           `json:"shadows_config"`
}

func (e entryView) id() string { s, _ := e.Customer["id"].(string); return s }

func runDirectoryCommand(sub string, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("customer "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "/etc/aupguard/aupguard.yaml", "config file")
	adminURL := fs.String("admin", "", "change the directory through this gateway's admin API (default: the store itself with Redis, the admin API of admin.listen with the memory store)")
	asJSON := fs.Bool("json", false, "print JSON")
	file := fs.String("f", "", "definition file (YAML or JSON, the config file's customer fields); - reads stdin")
	limit := fs.Int("n", 20, "changes to show (show, history)")
	format := fs.String("format", "", "import format: json, ndjson or yaml (default: by the file's extension, .json .ndjson .jsonl, else yaml)")
	force := fs.Bool("force", false, "allow what the directory refuses by default (a network broader than directory.max_network_prefix, a catch-all login, a public-suffix domain, an overlap with another customer's networks or domains): sets force: true on the definitions written; each waived rule is printed, logged and kept in the change log")
	var sets, unsets multiFlag
	fs.Var(&sets, "set", "FIELD=VALUE: set a field (repeatable), e.g. -set limits.messages_per_hour=200 -set 'logins=[a, b]'")
	fs.Var(&unsets, "unset", "FIELD: remove a field, back to the default (repeatable)")
	// Flags may come before or after the customer ID.
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return 2
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	_ = fs.Parse(pos)
	cfg, ok := loadConfig(*cfgPath, stderr)
	if !ok {
		return 2
	}
	dir, err := openDirectory(cfg, *adminURL)
	if err != nil {
		fmt.Fprintf(stderr, "aupguard customer %s: %v\n", sub, err)
		return 2
	}
	defer dir.close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	fail := func(err error) int {
		var ve customer.ValidationError
		if errors.As(err, &ve) {
			for _, e := range ve {
				fmt.Fprintf(stderr, "aupguard customer %s: %s\n", sub, customer.ValidationError{e}.Error())
			}
			return 1
		}
		fmt.Fprintf(stderr, "aupguard customer %s: %v\n", sub, err)
		return 1
	}
	patch := map[string]any{}
	for _, s := range sets {
		k, v, ok := strings.Cut(s, "=")
		if !ok {
			fmt.Fprintf(stderr, "aupguard customer %s: -set %q: want FIELD=VALUE\n", sub, s)
			return 2
		}
		if err := customer.SetPath(patch, strings.TrimSpace(k), v, false); err != nil {
			return fail(err)
		}
	}
	for _, k := range unsets {
		if err := customer.SetPath(patch, k, "", true); err != nil {
			return fail(err)
		}
	}
	readFile := func() ([]byte, error) {
		if *file == "-" {
			return io.ReadAll(os.Stdin)
		}
		return os.ReadFile(*file)
	}
	if *force && (sub == "add" || sub == "set") {
		patch["force"] = true
	}
	printChange := func(c customer.Change) {
		fields := ""
		if len(c.Fields) > 0 {
			fields = " (" + strings.Join(c.Fields, ", ") + ")"
		}
		fmt.Fprintf(stdout, "%s %s%s: directory version %d; every gateway sharing the store applies it within a second\n", c.Op, c.ID, fields, c.Version)
		for _, f := range c.Forced {
			fmt.Fprintf(stderr, "aupguard customer %s: warning: customer %s: %s\n", sub, c.ID, f)
		}
	}
	switch sub {
	case "list":
		es, ver, err := dir.list(ctx)
		if err != nil {
			return fail(err)
		}
		if *asJSON {
			return printJSON(stdout, map[string]any{"version": ver, "customers": es})
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tSOURCE\tMODE\tLOGINS\tNETWORKS\tDOMAINS")
		for _, e := range es {
			src := e.Source
			if e.Shadows {
				src += " (over config)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%v\t%d\t%d\t%d\n", e.id(), src, orDash(e.Customer["mode"]), count(e.Customer["logins"]), count(e.Customer["networks"]), count(e.Customer["domains"]))
		}
		tw.Flush()
		fmt.Fprintf(stdout, "%d customers, directory version %d\n", len(es), ver)
		return 0
	case "show", "history":
		if fs.NArg() != 1 {
			fmt.Fprintf(stderr, "aupguard customer %s: give one customer ID\n", sub)
			return 2
		}
		id := fs.Arg(0)
		var e entryView
		if sub == "show" {
			if e, err = dir.get(ctx, id); err != nil {
				return fail(err)
			}
		}
		log, err := dir.log(ctx, id, *limit)
		if err != nil {
			return fail(err)
		}
		if *asJSON {
			if sub == "history" {
				return printJSON(stdout, map[string]any{"changes": log})
			}
			return printJSON(stdout, map[string]any{"customer": e.Customer, "source": e.Source, "shadows_config": e.Shadows, "changes": log})
		}
		if sub == "show" {
			fmt.Fprintf(stdout, "# %s: from the %s", id, e.Source)
			if e.Shadows {
				fmt.Fprint(stdout, " (replaces the config file's definition)")
			}
			fmt.Fprintln(stdout)
			y, _ := yamlOf(e.Customer)
			stdout.Write(y)
			fmt.Fprintln(stdout, "# changes, newest first:")
		}
		for _, c := range log {
			fmt.Fprintf(stdout, "%s  v%-6d %-6s via %-3s %s\n", c.Time.UTC().Format(time.RFC3339), c.Version, c.Op, c.Via, strings.Join(c.Fields, ", "))
		}
		if len(log) == 0 {
			fmt.Fprintln(stdout, "(no change recorded)")
		}
		return 0
	case "add":
		var def map[string]any
		if *file != "" {
			b, err := readFile()
			if err != nil {
				return fail(err)
			}
			c, err := customer.Decode(b)
			if err != nil {
				return fail(err)
			}
			raw, _ := customer.Encode(c)
			_ = json.Unmarshal(raw, &def)
		}
		if def == nil {
			def = map[string]any{}
		}
		if fs.NArg() == 1 {
			def["id"] = fs.Arg(0)
		} else if fs.NArg() > 1 {
			fmt.Fprintln(stderr, "aupguard customer add: at most one customer ID")
			return 2
		}
		mergeInto(def, patch)
		b, _ := json.Marshal(def)
		c, err := dir.add(ctx, b)
		if err != nil {
			return fail(err)
		}
		printChange(c)
		return 0
	case "set":
		if fs.NArg() != 1 {
			fmt.Fprintln(stderr, "aupguard customer set: give one customer ID")
			return 2
		}
		if *file != "" {
			b, err := readFile()
			if err != nil {
				return fail(err)
			}
			c, err := customer.Decode(b)
			if err != nil {
				return fail(err)
			}
			raw, _ := customer.Encode(c)
			var def map[string]any
			_ = json.Unmarshal(raw, &def)
			delete(def, "id")
			for k, v := range def {
				if _, set := patch[k]; !set {
					patch[k] = v
				}
			}
		}
		if len(patch) == 0 {
			fmt.Fprintln(stderr, "aupguard customer set: nothing to change (-set, -unset or -f)")
			return 2
		}
		c, err := dir.set(ctx, fs.Arg(0), patch)
		if err != nil {
			return fail(err)
		}
		printChange(c)
		return 0
	case "remove":
		if fs.NArg() != 1 {
			fmt.Fprintln(stderr, "aupguard customer remove: give one customer ID")
			return 2
		}
		c, err := dir.remove(ctx, fs.Arg(0))
		if err != nil {
			return fail(err)
		}
		printChange(c)
		return 0
	case "import":
		if *file == "" && fs.NArg() == 1 {
			*file = fs.Arg(0)
		}
		if *file == "" {
			fmt.Fprintln(stderr, "aupguard customer import: give a file with a customers: list")
			return 2
		}
		in, err := openImport(*file, *format)
		if err != nil {
			return fail(err)
		}
		defer in.close()
		res, err := dir.importList(ctx, in, *force)
		if err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "imported %d customers (%d added, %d replaced), versions %d to %d\n", res.Imported, res.Added, res.Replaced, res.First, res.Last)
		for _, c := range res.Forced {
			for _, f := range c.Forced {
				fmt.Fprintf(stderr, "aupguard customer import: warning: customer %s: %s\n", c.Customer, f)
			}
		}
		return 0
	}
	return 2
}

func mergeInto(dst, patch map[string]any) {
	for k, v := range patch {
		if pm, ok := v.(map[string]any); ok {
			d, ok := dst[k].(map[string]any)
			if !ok {
				d = map[string]any{}
			}
			mergeInto(d, pm)
			dst[k] = d
			continue
		}
		if v == nil {
			delete(dst, k)
			continue
		}
		dst[k] = v
	}
}

func count(v any) int {
	l, _ := v.([]any)
	return len(l)
}

func orDash(v any) any {
	if v == nil || v == "" {
		return "-"
	}
	return v
}

func printJSON(w io.Writer, v any) int {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return 1
	}
	return 0
}

func openDirectory(cfg *config.Config, adminURL string) (directory, error) {
	if adminURL == "" && cfg.Store.Backend == store.Redis {
		h, err := store.Open(cfg.Store, clock.System{})
		if err != nil {
			return nil, err
		}
		s, err := customer.OpenStore(h)
		if err != nil {
			h.Close()
			return nil, err
		}
		m := customer.NewManager(s, cfg, gateway.ConfigOptions(), clock.System{})
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := m.Sync(ctx); err != nil {
			h.Close()
			return nil, err
		}
		return &storeDirectory{m: m, h: h, cfg: cfg}, nil
	}
	return newAPIDirectory(cfg, adminURL)
}

// storeDirectory changes the directory in the shared store directly.
type storeDirectory struct {
	m   *customer.Manager
	h   *store.Handle
	cfg *config.Config
}

func view(e customer.Entry) entryView {
	m, _ := customer.MarshalEntry(e)
	cm, _ := m["customer"].(map[string]any)
	return entryView{Customer: cm, Source: e.Source, Shadows: e.Shadows}
}

func (d *storeDirectory) list(context.Context) ([]entryView, int64, error) {
	es := d.m.List()
	out := make([]entryView, len(es))
	for i, e := range es {
		out[i] = view(e)
	}
	return out, d.m.Version(), nil
}

func (d *storeDirectory) get(_ context.Context, id string) (entryView, error) {
	e, ok := d.m.Get(id)
	if !ok {
		return entryView{}, fmt.Errorf("%s: %w", id, customer.ErrNotFound)
	}
	return view(e), nil
}

func (d *storeDirectory) add(ctx context.Context, def []byte) (customer.Change, error) {
	c, err := customer.Decode(def)
	if err != nil {
		return customer.Change{}, err
	}
	return d.audited(d.m.Add(ctx, c, customer.ViaCLI))
}

func (d *storeDirectory) set(ctx context.Context, id string, patch map[string]any) (customer.Change, error) {
	return d.audited(d.m.Set(ctx, id, patch, customer.ViaCLI))
}

func (d *storeDirectory) remove(ctx context.Context, id string) (customer.Change, error) {
	return d.audited(d.m.Remove(ctx, id, customer.ViaCLI))
}

func (d *storeDirectory) importList(ctx context.Context, in importInput, force bool) (customer.ImportResult, error) {
	var src customer.ImportSource = customer.NewImportReader(in.r, in.format)
	if force {
		src = customer.ForceAll(src)
	}
	res, err := d.m.ImportFrom(ctx, src, customer.ViaCLI)
	if err == nil {
		recordCLI(d.cfg, os.Stderr, "customer.import", "", "", fmt.Sprintf("%d customers (%d added, %d replaced), versions %d to %d", res.Imported, res.Added, res.Replaced, res.First, res.Last))
	}
	return res, err
}

// audited records a change made in the store in the audit trail.
func (d *storeDirectory) audited(ch customer.Change, err error) (customer.Change, error) {
	if err == nil {
		after := string(ch.Definition)
		if len(ch.Fields) > 0 {
			after = "fields " + strings.Join(ch.Fields, ", ") + ": " + after
		}
		recordCLI(d.cfg, os.Stderr, "customer."+ch.Op, ch.ID, "", after)
	}
	return ch, err
}

// importInput is the file of an import, read as a stream.
type importInput struct {
	r      io.Reader
	size   int64 // -1: unknown (stdin)
	format string
	close  func()
}

// openImport opens an import file (- for stdin) in its format (by the
// -format flag, else the file's extension).
func openImport(name, format string) (importInput, error) {
	if format == "" {
		format = customer.ImportFormat(name)
	}
	switch format {
	case customer.FormatJSON, customer.FormatNDJSON, customer.FormatYAML:
	default:
		return importInput{}, fmt.Errorf("-format %q: want json, ndjson or yaml", format)
	}
	if name == "-" {
		return importInput{r: os.Stdin, size: -1, format: format, close: func() {}}, nil
	}
	f, err := os.Open(name)
	if err != nil {
		return importInput{}, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return importInput{}, err
	}
	return importInput{r: f, size: fi.Size(), format: format, close: func() { f.Close() }}, nil
}

func (d *storeDirectory) log(ctx context.Context, id string, limit int) ([]customer.Change, error) {
	return d.m.Log(ctx, id, limit)
}

func (d *storeDirectory) close() { d.h.Close() }

// apiDirectory changes the directory through a gateway's admin API.
type apiDirectory struct {
	base, token string
	client      *http.Client
}

func newAPIDirectory(cfg *config.Config, adminURL string) (*apiDirectory, error) {
	if cfg.Admin.TokenFile == "" {
		return nil, errors.New("the memory store lives in the running gateway: its admin API is needed, and admin.token_file is not set")
	}
	tok, err := os.ReadFile(cfg.Admin.TokenFile)
	if err != nil {
		return nil, fmt.Errorf("admin.token_file: %w", err)
	}
	d := &apiDirectory{base: strings.TrimRight(adminURL, "/"), token: strings.TrimSpace(string(tok)), client: &http.Client{Timeout: time.Minute}}
	if d.base == "" {
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
			d.client.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
		}
		d.base = scheme + "://" + cfg.Admin.Listen
	}
	return d, nil
}

func (d *apiDirectory) do(ctx context.Context, method, path string, body []byte, out any) error {
	if body == nil {
		return d.send(ctx, method, path, nil, 0, "", out)
	}
	return d.send(ctx, method, path, bytes.NewReader(body), int64(len(body)), "application/json", out)
}

// send makes one request with a streamed body of size bytes (-1: unknown).
func (d *apiDirectory) send(ctx context.Context, method, path string, body io.Reader, size int64, contentType string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, d.base+path, body)
	if err != nil {
		return err
	}
	if body != nil {
		req.ContentLength = size
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Authorization", "Bearer "+d.token)
	req.Header.Set("Aupguard-Via", customer.ViaCLI)
	// The audit trail names the user who ran the command (honoured with
	// the admin token only).
	req.Header.Set("Aupguard-Actor", cliWho())
	if body == nil && method != http.MethodGet {
		// The admin API takes writes only with their media type (a
		// cross-site form cannot send it).
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return fmt.Errorf("admin API: %w", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if resp.StatusCode >= 300 {
		var e struct {
			Error  string                   `json:"error"`
			Errors customer.ValidationError `json:"errors"`
		}
		_ = json.Unmarshal(b, &e)
		switch {
		case len(e.Errors) > 0:
			return e.Errors
		case resp.StatusCode == http.StatusNotFound:
			return customer.ErrNotFound
		case e.Error != "":
			return fmt.Errorf("admin API: %s (%s)", e.Error, resp.Status)
		default:
			return fmt.Errorf("admin API: %s", resp.Status)
		}
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

// list reads the whole directory a page at a time.
func (d *apiDirectory) list(ctx context.Context) ([]entryView, int64, error) {
	var all []entryView
	var version int64
	cursor := ""
	for {
		var out struct {
			Version   int64       `json:"version"`
			Customers []entryView `json:"customers"`
			Next      string      `json:"next_cursor"`
		}
		if err := d.do(ctx, "GET", "/api/directory?limit=1000&cursor="+url.QueryEscape(cursor), nil, &out); err != nil {
			return nil, 0, err
		}
		all = append(all, out.Customers...)
		if cursor == "" {
			version = out.Version
		}
		if out.Next == "" {
			return all, version, nil
		}
		cursor = out.Next
	}
}

func (d *apiDirectory) get(ctx context.Context, id string) (entryView, error) {
	var e entryView
	err := d.do(ctx, "GET", "/api/customers/"+pathEscape(id)+"/definition", nil, &e)
	return e, err
}

type changeReply struct {
	Change customer.Change `json:"change"`
}

func (d *apiDirectory) add(ctx context.Context, def []byte) (customer.Change, error) {
	var r changeReply
	err := d.do(ctx, "POST", "/api/customers", def, &r)
	return r.Change, err
}

func (d *apiDirectory) set(ctx context.Context, id string, patch map[string]any) (customer.Change, error) {
	b, _ := json.Marshal(patch)
	var r changeReply
	err := d.do(ctx, "PATCH", "/api/customers/"+pathEscape(id), b, &r)
	return r.Change, err
}

func (d *apiDirectory) remove(ctx context.Context, id string) (customer.Change, error) {
	var r changeReply
	err := d.do(ctx, "DELETE", "/api/customers/"+pathEscape(id), nil, &r)
	return r.Change, err
}

func (d *apiDirectory) importList(ctx context.Context, in importInput, force bool) (customer.ImportResult, error) {
	var r customer.ImportResult
	ct := map[string]string{customer.FormatJSON: "application/json", customer.FormatNDJSON: "application/x-ndjson", customer.FormatYAML: "application/yaml"}[in.format]
	path := "/api/customers/import"
	if force {
		path += "?force=1"
	}
	err := d.send(ctx, "POST", path, in.r, in.size, ct, &r)
	return r, err
}

func (d *apiDirectory) log(ctx context.Context, id string, limit int) ([]customer.Change, error) {
	var r struct {
		Changes []customer.Change `json:"changes"`
	}
	p := fmt.Sprintf("/api/changes?limit=%d", limit)
	if id != "" {
		p = fmt.Sprintf("/api/customers/%s/changes?limit=%d", pathEscape(id), limit)
	}
	err := d.do(ctx, "GET", p, nil, &r)
	return r.Changes, err
}

func (d *apiDirectory) close() {}

func pathEscape(s string) string { return url.PathEscape(s) }

func yamlOf(m map[string]any) ([]byte, error) { return yaml.Marshal(m) }
