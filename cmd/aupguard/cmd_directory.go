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
	list(ctx context.Context) ([]customer.Entry, int64, error)
	get(ctx context.Context, id string) (customer.Entry, error)
	add(ctx context.Context, def []byte) (customer.Change, error)
	set(ctx context.Context, id string, patch map[string]any) (customer.Change, error)
	remove(ctx context.Context, id string) (customer.Change, error)
	importList(ctx context.Context, in importInput, force bool) (customer.ImportResult, error)
	log(ctx context.Context, id string, limit int) ([]customer.Change, error)
	close()
}

// directoryCommand is one run of a customer command (list, show,
// history, add, set, remove, import) on a directory: its flags, the
// change they ask for, and where it prints.
type directoryCommand struct {
	sub            string
	fs             *flag.FlagSet
	asJSON, force  bool
	file, format   string
	limit          int
	patch          map[string]any
	dir            directory
	stdout, stderr io.Writer
}

func runDirectoryCommand(sub string, args []string, stdout, stderr io.Writer) int {
	c := &directoryCommand{sub: sub, stdout: stdout, stderr: stderr, patch: map[string]any{}}
	cfgPath, adminURL, sets, unsets, ok := c.parseFlags(args)
	if !ok {
		return 2
	}
	cfg, ok := loadConfig(cfgPath, stderr)
	if !ok {
		return 2
	}
	dir, err := openDirectory(cfg, adminURL)
	if err != nil {
		fmt.Fprintf(stderr, "aupguard customer %s: %v\n", sub, err)
		return 2
	}
	defer dir.close()
	c.dir = dir
	if code := c.buildPatch(sets, unsets); code >= 0 {
		return code
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	switch sub {
	case "list":
		return c.list(ctx)
	case "show", "history":
		return c.show(ctx)
	case "add":
		return c.add(ctx)
	case "set":
		return c.set(ctx)
	case "remove":
		return c.remove(ctx)
	case "import":
		return c.importFile(ctx)
	}
	return 2
}

// parseFlags reads the flags, which may come before or after the
// customer ID; ok is false on a usage error (already printed).
func (c *directoryCommand) parseFlags(args []string) (cfgPath, adminURL string, sets, unsets multiFlag, ok bool) {
	fs := flag.NewFlagSet("customer "+c.sub, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	cfgFlag := fs.String("config", "/etc/aupguard/aupguard.yaml", "config file")
	admin := fs.String("admin", "", "change the directory through this gateway's admin API (default: the store itself with Redis, the admin API of admin.listen with the memory store)")
	fs.BoolVar(&c.asJSON, "json", false, "print JSON")
	fs.StringVar(&c.file, "f", "", "definition file (YAML or JSON, the config file's customer fields); - reads stdin")
	fs.IntVar(&c.limit, "n", 20, "changes to show (show, history)")
	fs.StringVar(&c.format, "format", "", "import format: json, ndjson or yaml (default: by the file's extension, .json .ndjson .jsonl, else yaml)")
	fs.BoolVar(&c.force, "force", false, "allow what the directory refuses by default (a network broader than directory.max_network_prefix, a catch-all login, a public-suffix domain, an overlap with another customer's networks or domains): sets force: true on the definitions written; each waived rule is printed, logged and kept in the change log")
	fs.Var(&sets, "set", "FIELD=VALUE: set a field (repeatable), e.g. -set limits.messages_per_hour=200 -set 'logins=[a, b]'")
	fs.Var(&unsets, "unset", "FIELD: remove a field, back to the default (repeatable)")
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return "", "", nil, nil, false
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	_ = fs.Parse(pos)
	c.fs = fs
	return *cfgFlag, *admin, sets, unsets, true
}

// buildPatch turns -set, -unset and -force into the merge patch of the
// change; it returns an exit code on error, -1 otherwise.
func (c *directoryCommand) buildPatch(sets, unsets multiFlag) int {
	for _, s := range sets {
		k, v, ok := strings.Cut(s, "=")
		if !ok {
			fmt.Fprintf(c.stderr, "aupguard customer %s: -set %q: want FIELD=VALUE\n", c.sub, s)
			return 2
		}
		if err := customer.SetPath(c.patch, strings.TrimSpace(k), v, false); err != nil {
			return c.fail(err)
		}
	}
	for _, k := range unsets {
		if err := customer.SetPath(c.patch, k, "", true); err != nil {
			return c.fail(err)
		}
	}
	if c.force && (c.sub == "add" || c.sub == "set") {
		c.patch["force"] = true
	}
	return -1
}

// fail prints an error (each field of a validation error on its line).
func (c *directoryCommand) fail(err error) int {
	var ve customer.ValidationError
	if errors.As(err, &ve) {
		for _, e := range ve {
			fmt.Fprintf(c.stderr, "aupguard customer %s: %s\n", c.sub, customer.ValidationError{e}.Error())
		}
		return 1
	}
	fmt.Fprintf(c.stderr, "aupguard customer %s: %v\n", c.sub, err)
	return 1
}

// printChange prints a change written, and the rules it waived.
func (c *directoryCommand) printChange(ch customer.Change) int {
	fields := ""
	if len(ch.Fields) > 0 {
		fields = " (" + strings.Join(ch.Fields, ", ") + ")"
	}
	fmt.Fprintf(c.stdout, "%s %s%s: directory version %d; every gateway sharing the store applies it within a second\n", ch.Op, ch.ID, fields, ch.Version)
	for _, f := range ch.Forced {
		fmt.Fprintf(c.stderr, "aupguard customer %s: warning: customer %s: %s\n", c.sub, ch.ID, f)
	}
	return 0
}

// readDefinition reads the -f file as a definition, as a JSON object.
func (c *directoryCommand) readDefinition() (map[string]any, error) {
	var b []byte
	var err error
	if c.file == "-" {
		b, err = io.ReadAll(os.Stdin)
	} else {
		b, err = os.ReadFile(c.file)
	}
	if err != nil {
		return nil, err
	}
	def, err := customer.Decode(b)
	if err != nil {
		return nil, err
	}
	raw, _ := customer.Encode(def)
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	return m, nil
}

func (c *directoryCommand) list(ctx context.Context) int {
	es, ver, err := c.dir.list(ctx)
	if err != nil {
		return c.fail(err)
	}
	if c.asJSON {
		return printJSON(c.stdout, map[string]any{"version": ver, "customers": es})
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSOURCE\tMODE\tLOGINS\tNETWORKS\tDOMAINS")
	for _, e := range es {
		src := e.Source
		if e.Shadows {
			src += " (over config)"
		}
		cu := &e.Customer
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\n", cu.ID, src, orDash(cu.Mode), len(cu.Logins), len(cu.Networks), len(cu.Domains))
	}
	tw.Flush()
	fmt.Fprintf(c.stdout, "%d customers, directory version %d\n", len(es), ver)
	return 0
}

// show prints a customer's definition and changes (show), or its changes
// alone (history).
func (c *directoryCommand) show(ctx context.Context) int {
	if c.fs.NArg() != 1 {
		fmt.Fprintf(c.stderr, "aupguard customer %s: give one customer ID\n", c.sub)
		return 2
	}
	id := c.fs.Arg(0)
	var e customer.Entry
	if c.sub == "show" {
		var err error
		if e, err = c.dir.get(ctx, id); err != nil {
			return c.fail(err)
		}
	}
	log, err := c.dir.log(ctx, id, c.limit)
	if err != nil {
		return c.fail(err)
	}
	if c.asJSON {
		if c.sub == "history" {
			return printJSON(c.stdout, map[string]any{"changes": log})
		}
		m, err := customer.MarshalEntry(e)
		if err != nil {
			return c.fail(err)
		}
		m["changes"] = log
		return printJSON(c.stdout, m)
	}
	if c.sub == "show" {
		fmt.Fprintf(c.stdout, "# %s: from the %s", id, e.Source)
		if e.Shadows {
			fmt.Fprint(c.stdout, " (replaces the config file's definition)")
		}
		fmt.Fprintln(c.stdout)
		m, err := customer.MarshalEntry(e)
		if err != nil {
			return c.fail(err)
		}
		y, _ := yaml.Marshal(m["customer"])
		c.stdout.Write(y)
		fmt.Fprintln(c.stdout, "# changes, newest first:")
	}
	for _, ch := range log {
		fmt.Fprintf(c.stdout, "%s  v%-6d %-6s via %-3s %s\n", ch.Time.UTC().Format(time.RFC3339), ch.Version, ch.Op, ch.Via, strings.Join(ch.Fields, ", "))
	}
	if len(log) == 0 {
		fmt.Fprintln(c.stdout, "(no change recorded)")
	}
	return 0
}

func (c *directoryCommand) add(ctx context.Context) int {
	def := map[string]any{}
	if c.file != "" {
		m, err := c.readDefinition()
		if err != nil {
			return c.fail(err)
		}
		if m != nil {
			def = m
		}
	}
	if c.fs.NArg() == 1 {
		def["id"] = c.fs.Arg(0)
	} else if c.fs.NArg() > 1 {
		fmt.Fprintln(c.stderr, "aupguard customer add: at most one customer ID")
		return 2
	}
	mergeInto(def, c.patch)
	b, _ := json.Marshal(def)
	ch, err := c.dir.add(ctx, b)
	if err != nil {
		return c.fail(err)
	}
	return c.printChange(ch)
}

func (c *directoryCommand) set(ctx context.Context) int {
	if c.fs.NArg() != 1 {
		fmt.Fprintln(c.stderr, "aupguard customer set: give one customer ID")
		return 2
	}
	if c.file != "" {
		def, err := c.readDefinition()
		if err != nil {
			return c.fail(err)
		}
		delete(def, "id")
		for k, v := range def {
			if _, set := c.patch[k]; !set {
				c.patch[k] = v
			}
		}
	}
	if len(c.patch) == 0 {
		fmt.Fprintln(c.stderr, "aupguard customer set: nothing to change (-set, -unset or -f)")
		return 2
	}
	ch, err := c.dir.set(ctx, c.fs.Arg(0), c.patch)
	if err != nil {
		return c.fail(err)
	}
	return c.printChange(ch)
}

func (c *directoryCommand) remove(ctx context.Context) int {
	if c.fs.NArg() != 1 {
		fmt.Fprintln(c.stderr, "aupguard customer remove: give one customer ID")
		return 2
	}
	ch, err := c.dir.remove(ctx, c.fs.Arg(0))
	if err != nil {
		return c.fail(err)
	}
	return c.printChange(ch)
}

func (c *directoryCommand) importFile(ctx context.Context) int {
	if c.file == "" && c.fs.NArg() == 1 {
		c.file = c.fs.Arg(0)
	}
	if c.file == "" {
		fmt.Fprintln(c.stderr, "aupguard customer import: give a file with a customers: list")
		return 2
	}
	in, err := openImport(c.file, c.format)
	if err != nil {
		return c.fail(err)
	}
	defer in.close()
	res, err := c.dir.importList(ctx, in, c.force)
	if err != nil {
		return c.fail(err)
	}
	fmt.Fprintf(c.stdout, "imported %d customers (%d added, %d replaced), versions %d to %d\n", res.Imported, res.Added, res.Replaced, res.First, res.Last)
	for _, f := range res.Forced {
		for _, w := range f.Forced {
			fmt.Fprintf(c.stderr, "aupguard customer import: warning: customer %s: %s\n", f.Customer, w)
		}
	}
	return 0
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

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
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

func (d *storeDirectory) list(context.Context) ([]customer.Entry, int64, error) {
	return d.m.List(), d.m.Version(), nil
}

func (d *storeDirectory) get(_ context.Context, id string) (customer.Entry, error) {
	e, ok := d.m.Get(id)
	if !ok {
		return customer.Entry{}, fmt.Errorf("%s: %w", id, customer.ErrNotFound)
	}
	return e, nil
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
func (d *apiDirectory) list(ctx context.Context) ([]customer.Entry, int64, error) {
	var all []customer.Entry
	var version int64
	cursor := ""
	for {
		var out struct {
			Version   int64            `json:"version"`
			Customers []customer.Entry `json:"customers"`
			Next      string           `json:"next_cursor"`
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

func (d *apiDirectory) get(ctx context.Context, id string) (customer.Entry, error) {
	var e customer.Entry
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
