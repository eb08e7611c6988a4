// Package access is who may read what through the admin server: the
// principal a request authenticated as (the admin token, or an access
// token scoped to one reseller or one customer) and the tenant scope each
// admin route declares when it registers (Scope). The admin server
// enforces the scopes centrally: a route that declares none is the admin
// token's alone, and whatever a scoped token may not see answers the same
// 404 as what does not exist (no oracle for other tenants' ids or refs).
//
// Families declare their routes' scopes with the constructors here
// (Path, Query, Filtered, Owned, JSONField, Methods), so a route moved out
// of the core, or added later, is scoped by construction.
package access

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
)

// Kinds of scoped tokens.
const (
	KindReseller = "reseller"
	KindCustomer = "customer"
)

// Principal is who a request authenticated as.
type Principal struct {
	// Name is the token's name ("admin" for the admin token).
	Name string `json:"name"`
	// Admin is true for the admin token: every route, every tenant.
	Admin bool `json:"admin"`
	// Kind is KindReseller or KindCustomer for a scoped token.
	Kind string `json:"kind,omitempty"`
	// ID is the reseller's or the customer's id.
	ID string `json:"id,omitempty"`
}

// Owners says which reseller a customer belongs to.
type Owners interface {
	// ResellerOf returns the customer's reseller ("" for the provider's
	// own) and whether the customer exists.
	ResellerOf(customer string) (reseller string, known bool)
}

// Tenant is a scoped principal with the directory it is judged against.
type Tenant struct {
	Principal
	Owners Owners
}

// Sees reports whether the tenant may see the customer's data: its own
// customer, or one of its reseller's customers. An unknown customer is
// seen by nobody but the admin.
func (t Tenant) Sees(customer string) bool {
	if customer == "" {
		return false
	}
	reseller, known := t.Owners.ResellerOf(customer)
	if !known {
		return false
	}
	switch t.Kind {
	case KindCustomer:
		return customer == t.ID
	case KindReseller:
		return reseller != "" && reseller == t.ID
	}
	return false
}

// Scope decides whether a scoped token's request may reach a route. It
// returns the request to serve (possibly narrowed: a customer filter set
// to the tenant's own) and false when the tenant may not see what the
// request names, which the admin server answers with its uniform 404. A
// nil Scope is the admin token's alone.
type Scope func(r *http.Request, t Tenant) (*http.Request, bool)

type ctxKey struct{}

// viewKey carries the visibility filter of a scoped request.
type viewKey struct{}

// WithPrincipal returns ctx carrying the request's principal, and for a
// scoped one its tenant (Visible).
func WithPrincipal(ctx context.Context, p Principal, owners Owners) context.Context {
	ctx = context.WithValue(ctx, ctxKey{}, p)
	if !p.Admin {
		ctx = context.WithValue(ctx, viewKey{}, Tenant{Principal: p, Owners: owners})
	}
	return ctx
}

// FromContext returns the request's principal (false: none, as in a
// request that did not come through the admin server).
func FromContext(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(ctxKey{}).(Principal)
	return p, ok
}

// Visible returns the filter a list handler applies to each customer id
// it would show: every customer for the admin (or outside the admin
// server), only the tenant's for a scoped token. A handler of a route
// declared Filtered must apply it.
func Visible(ctx context.Context) func(customer string) bool {
	t, ok := ctx.Value(viewKey{}).(Tenant)
	if !ok {
		return func(string) bool { return true }
	}
	return t.Sees
}

// Scoped reports whether the request's principal is a scoped token.
func Scoped(ctx context.Context) bool {
	_, ok := ctx.Value(viewKey{}).(Tenant)
	return ok
}

// Path scopes a route whose path names the customer (the wildcard name).
func Path(name string) Scope {
	return func(r *http.Request, t Tenant) (*http.Request, bool) {
		return r, t.Sees(r.PathValue(name))
	}
}

// Query scopes a route filtered by a customer query parameter (the first
// of names present is the filter): a named customer must be the tenant's;
// none names the tenant's own for a customer token, and for a reseller
// token (which the handler cannot filter by a set) is refused.
func Query(names ...string) Scope {
	return func(r *http.Request, t Tenant) (*http.Request, bool) {
		q := r.URL.Query()
		for _, n := range names {
			if v := q.Get(n); v != "" {
				return r, t.Sees(v)
			}
		}
		if t.Kind != KindCustomer {
			return r, false
		}
		q.Set(names[0], t.ID)
		return withQuery(r, q), true
	}
}

// Filtered scopes a list route whose handler filters what it shows with
// Visible: a customer named in the query parameter must be the tenant's;
// none names the tenant's own for a customer token, and for a reseller
// token leaves the handler to show its customers only.
func Filtered(name string) Scope {
	return func(r *http.Request, t Tenant) (*http.Request, bool) {
		q := r.URL.Query()
		if v := q.Get(name); v != "" {
			return r, t.Sees(v)
		}
		if t.Kind == KindCustomer {
			q.Set(name, t.ID)
			return withQuery(r, q), true
		}
		return r, true
	}
}

// Owned scopes a route whose resource is found first: owner returns the
// customer the resource belongs to, or found false when there is none (the
// same 404 either way).
func Owned(owner func(r *http.Request) (customer string, found bool)) Scope {
	return func(r *http.Request, t Tenant) (*http.Request, bool) {
		c, found := owner(r)
		return r, found && t.Sees(c)
	}
}

// maxPeek bounds the JSON body JSONField reads to find the customer.
const maxPeek = 64 << 10

// JSONField scopes a write whose JSON body names the customer (the first
// of fields present and not empty). The body is read (at most 64 KiB;
// a larger one is refused) and given back to the handler unchanged.
func JSONField(fields ...string) Scope {
	return func(r *http.Request, t Tenant) (*http.Request, bool) {
		b, err := io.ReadAll(io.LimitReader(r.Body, maxPeek+1))
		if err != nil || len(b) > maxPeek {
			return r, false
		}
		var m map[string]any
		if json.Unmarshal(b, &m) != nil {
			return r, false
		}
		r2 := r.Clone(r.Context())
		r2.Body = io.NopCloser(bytes.NewReader(b))
		r2.ContentLength = int64(len(b))
		for _, f := range fields {
			if v, _ := m[f].(string); v != "" {
				return r2, t.Sees(v)
			}
		}
		return r2, false
	}
}

// Methods scopes a pattern registered for every method (a mounted
// handler) per method; a method not listed is the admin token's alone.
// HEAD is judged as GET.
func Methods(m map[string]Scope) Scope {
	return func(r *http.Request, t Tenant) (*http.Request, bool) {
		method := r.Method
		if method == http.MethodHead {
			method = http.MethodGet
		}
		s := m[method]
		if s == nil {
			return r, false
		}
		return s(r, t)
	}
}

// Any scopes a route every tenant may use whatever it names (its handler
// shows only the principal's own, like a page about the token itself).
func Any(r *http.Request, _ Tenant) (*http.Request, bool) { return r, true }

func withQuery(r *http.Request, q url.Values) *http.Request {
	r2 := r.Clone(r.Context())
	u := *r.URL
	u.RawQuery = q.Encode()
	r2.URL = &u
	return r2
}
