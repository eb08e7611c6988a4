// Package auth holds the sender-authentication checks of the gateway:
// SPF of the envelope sender against the provider's egress addresses,
// verification of the DKIM signatures customers put on their mail, the
// DMARC decision (RFC 7489) with a pure alignment evaluator, and DKIM
// signing of accepted mail with the customers' keys.
//
// The checks only report findings; the configuration decides what is done
// with them. Their per-message results are kept on the policy.Txn and read
// through SPF, DKIM, DMARC and DKIMAligned, so that later checks (bulk mail
// rules) can use them.
//
// Every DNS question goes through a resolver.Resolver (the gateway's
// caching resolver), bounded by the caller's context: a temporary DNS
// failure is an error wrapped with 451 4.4.3, never a finding.
//
// The package owns its configuration: the auth: section and the
// customers' require_alignment and dkim keys are decoded and validated in
// config.go (the customers' key files are read there, once), and setup.go
// declares the family the gateway plugs in (Family).
package auth
