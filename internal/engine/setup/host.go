package setup

import (
	"context"
	"fmt"
	"github.com/aupguard/aupguard/internal/observability/access"
	"html/template"
	"io"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/decision"
)

// Host is what the core offers a family's Setup: its dependencies, the
// config in force, and the places to register what the family runs and
// serves. The daemon makes one Host for all families and serves what they
// registered; a one-shot command makes one and uses what it needs.
type Host struct {
	// Deps are the dependencies of the checks (store, clock, logger,
	// resolver, secret...). Deps.Config is the config at start.
	Deps *Deps
	// Serving is true in the daemon: the services, listeners and routes
	// registered will run. A command's Host (false) uses only the report
	// sections: a family registers its services only when Serving.
	Serving bool
	// Labeled, set by the daemon, returns the customers that have their
	// own label value in metrics (admin.metrics_top_customers): a
	// per-customer collector exports those only. Nil outside the daemon.
	Labeled func() []string
	// Stdin is the daemon's standard input (a family may read a log from
	// it: reputation.deliveries.source "-").
	Stdin io.Reader
	// MailPostmaster, set by the daemon, mails provider.postmaster a plain
	// text message (reports.smtp); it fails when either is not set.
	MailPostmaster func(ctx context.Context, subject, body string) error

	cfg        atomic.Pointer[config.Config]
	family     string
	services   []Service
	admin      []Route
	public     []Listener
	collectors []prometheus.Collector
	sections   []ReportSection
	panels     []ConsolePanel
	components []func() []Component
	reloads    []func(cfg *config.Config) error
	observers  []decision.Observer
	notices    map[string]string
}

// NewHost returns a Host over d (d.Config is the config in force).
func NewHost(d *Deps) *Host {
	h := &Host{Deps: d}
	h.cfg.Store(d.Config)
	return h
}

// Setup runs the Setup of each family that has one, in order; the first
// error names its family.
func (h *Host) Setup(fams []Family) error {
	for _, f := range fams {
		if f.Setup == nil {
			continue
		}
		h.family = f.Name
		if err := f.Setup(h); err != nil {
			return fmt.Errorf("%s: %w", f.Name, err)
		}
	}
	h.family = ""
	return nil
}

// Config returns the config in force: Deps.Config until a reload, the
// reloaded one after (Reload).
func (h *Host) Config() *config.Config { return h.cfg.Load() }

// Service is something a family runs beside the milter (a log reader, a
// blocklist watcher), started after the milter listens and stopped at
// shutdown.
type Service interface {
	// Serve runs until Shutdown is called or ctx ends; an error ends the
	// daemon.
	Serve(ctx context.Context) error
	// Shutdown stops Serve, waiting for it up to ctx's deadline.
	Shutdown(ctx context.Context) error
}

// Service registers a background service.
func (h *Host) Service(s Service) { h.services = append(h.services, s) }

// Route is an HTTP handler on a ServeMux pattern ("/api/optouts",
// "POST /api/complaints", "/api/customers/{id}/flag").
type Route struct {
	Pattern string
	Handler http.Handler
	// Family is the family that registered it.
	Family string
	// Scope opens an admin route to scoped access tokens (access.Scope;
	// nil: the admin token's alone), enforced by the admin server.
	Scope access.Scope
}

// AdminRoute mounts handler on the admin server under pattern: behind
// the admin token and the cross-site guard (admin/guard.go), like the
// core's own API. Patterns are the admin ServeMux's (Go 1.22 patterns).
// scope (at most one) opens it to reseller and customer tokens, within
// their own tenants (access.Path, access.Query, access.Methods...);
// without, a scoped token gets 404.
func (h *Host) AdminRoute(pattern string, handler http.Handler, scope ...access.Scope) {
	var sc access.Scope
	if len(scope) > 0 {
		sc = scope[0]
	}
	h.admin = append(h.admin, Route{Pattern: pattern, Handler: handler, Family: h.family, Scope: sc})
}

// Listener is a public HTTP listener of a family (opt-out's unsubscribe
// endpoint): no token. The core listens on Addr, capped at
// MaxConnections (and MaxConnectionsPerClient per client address) inside
// the process's descriptor budget, retries failed accepts, recovers
// panics, exports the listener's metrics under Name, and serves Handler.
type Listener struct {
	Name                    string
	Addr                    string
	MaxConnections          int
	MaxConnectionsPerClient int
	Handler                 http.Handler
	// Started, when set, is called with the address listened on.
	Started func(addr string)
}

// PublicListener registers a public listener.
func (h *Host) PublicListener(l Listener) { h.public = append(h.public, l) }

// Collector registers Prometheus metrics (served at the admin server's
// /metrics). Metric names keep the aupguard_ prefix.
func (h *Host) Collector(c prometheus.Collector) { h.collectors = append(h.collectors, c) }

// Component is one part of a family in /readyz: it can fall behind
// without the gateway being unready.
type Component struct {
	// Name is its key in the /readyz answer.
	Name string
	// Degraded says why it is behind or stopped ("" when it is not).
	Degraded string
	// Detail is shown as is (JSON).
	Detail any
}

// Component registers a readiness reporter, called at each /readyz.
func (h *Host) Component(f func() []Component) { h.components = append(h.components, f) }

// OnReload registers f, called with the new config at each reload (file
// or live directory) before it is in force; an error refuses the reload.
func (h *Host) OnReload(f func(cfg *config.Config) error) { h.reloads = append(h.reloads, f) }

// ReportQuery is what a report section is built for.
type ReportQuery struct {
	// Since and Until bound the period ([Since, Until)).
	Since, Until time.Time
	// Customer restricts the report to one customer ("" is provider-wide).
	Customer string
	// Customers are the customers the report shows, most messages first.
	Customers []string
	// Config is the config in force (may be nil).
	Config *config.Config
}

// ReportSection is a family's part of the postmaster report (the
// periodic mail, `aupguard report`, the console's report page).
type ReportSection struct {
	// Name is the section's key in the report's JSON.
	Name string
	// Title heads the section in the HTML report.
	Title string
	// Build computes the section; nil (and no error) leaves it out. An
	// error is listed in the report's errors, the rest stands.
	Build func(ctx context.Context, q ReportQuery) (any, error)
	// HTML renders what Build returned (nil: the section is in the JSON
	// only).
	HTML func(v any) template.HTML
}

// ReportSection registers a report section.
func (h *Host) ReportSection(s ReportSection) { h.sections = append(h.sections, s) }

// ConsolePanel is a family's panel on the console's customer page.
type ConsolePanel struct {
	// Name identifies the panel (an HTML id).
	Name string
	// Title heads it.
	Title string
	// Customer renders the panel for one customer; nil (and no error)
	// leaves it out.
	Customer func(ctx context.Context, cfg *config.Config, id string) (template.HTML, error)
}

// ConsolePanel registers a console panel.
func (h *Host) ConsolePanel(p ConsolePanel) { h.panels = append(h.panels, p) }

// Observer registers o, told of every decision after it is made (it must
// not block: the reply waits for it).
func (h *Host) Observer(o decision.Observer) { h.observers = append(h.observers, o) }

// Notice declares that a decision with finding means its customer needs
// a human: the postmaster (and, with notifications.abuse_contact, the
// customer's abuse contact) is mailed that the customer what ("was
// flagged: it keeps sending to recipients who opted out"; the text
// before a colon is the subject), at most once per customer and finding
// per notifications.interval.
func (h *Host) Notice(finding, what string) {
	if h.notices == nil {
		h.notices = map[string]string{}
	}
	h.notices[finding] = what
}

// Observers are the registered decision observers.
func (h *Host) Observers() []decision.Observer { return h.observers }

// Notices are the declared notices: what each finding says.
func (h *Host) Notices() map[string]string { return h.notices }

// Services are the registered services.
func (h *Host) Services() []Service { return h.services }

// AdminRoutes are the registered admin routes.
func (h *Host) AdminRoutes() []Route { return h.admin }

// PublicListeners are the registered public listeners.
func (h *Host) PublicListeners() []Listener { return h.public }

// Collectors are the registered metric collectors.
func (h *Host) Collectors() []prometheus.Collector { return h.collectors }

// ReportSections are the registered report sections.
func (h *Host) ReportSections() []ReportSection { return h.sections }

// ConsolePanels are the registered console panels.
func (h *Host) ConsolePanels() []ConsolePanel { return h.panels }

// Components returns every registered component's state now.
func (h *Host) Components() []Component {
	var out []Component
	for _, f := range h.components {
		out = append(out, f()...)
	}
	return out
}

// Reload calls the reload hooks with cfg and, when all accept it, makes
// it the config in force.
func (h *Host) Reload(cfg *config.Config) error {
	for _, f := range h.reloads {
		if err := f(cfg); err != nil {
			return err
		}
	}
	h.cfg.Store(cfg)
	return nil
}
