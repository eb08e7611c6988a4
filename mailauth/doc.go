// Package mailauth holds the whole-message tests of the sender
// authentication checks (spf, dkim, dmarc and dkim_sign, implemented in
// package auth and registered by package gateway): golden cases in
// testdata/cases, each a message (NAME.eml) with the DNS it sees
// (NAME.dns, served by internal/fakedns) and the expected explain outcome
// (NAME.golden), run through gateway.Explain with the real registry and the
// real caching resolver; and benchmarks of a message through those checks
// with cached DNS, with and without a signature to verify, and of signing.
//
// Signatures the gateway adds are verified independently of package auth,
// with go-msgauth's verifier against the same fake DNS.
//
// The package has no code of its own: run `go test ./mailauth/`, and
// `go test ./mailauth/ -update` to rewrite the .golden files after a
// deliberate change (review the diff).
package mailauth
