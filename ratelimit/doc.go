// Package ratelimit enforces a customer's volume limits (AUP: mail
// "excessive" in frequency or size, mailbombing, attempts to "overload a
// system") and detects sudden bursts of volume, the usual sign of a
// compromised account.
//
// Checks: message_size (declared SIZE= at MAIL FROM, RFC 1870 §6.1, and the
// size received), recipients_per_message (452 4.5.3 for the extra
// recipients, RFC 5321 §4.5.3.1.10) and rate_limit (smooth rates, daily
// quotas, per-recipient frequency and spike detection, on counters shared
// by all of the provider's MTAs).
//
// Counting is honest and two-phase: rate_limit reserves at RCPT (recipient
// counters, for that recipient) and at end of message (message counters),
// and at Finish keeps what was accepted and releases the rest: a deferred,
// refused or aborted message, or a recipient refused by a later check,
// consumes nothing. A reservation counts against the limit from the moment
// it is made, so concurrent transactions on several MTAs never let more
// than the limit through. A gateway that dies between reserve and Finish
// leaves its reservation counted: counters err towards refusing.
//
// Each stage's counter work is one Backend.Run: on Redis one Lua script
// (run.lua) in one round trip, with all keys of the customer under its
// Cluster hash tag and time from Redis TIME; in memory the same semantics
// with the injected clock (memory.go is the reference).
//
// Spike detection: per customer and hour of the week (168 slots, Monday
// 00h UTC first), the hourly message count is learnt as an exponentially
// weighted moving average, updated once a week per slot when the hour is
// over: ewma = (1-alpha)·ewma + alpha·min(count, max(factor·ewma,
// floor·60/window)) — the clip keeps a burst from teaching the baseline
// that bursts are normal. A slot without history uses the configured
// default baseline (new customers). For the current hour the baseline is
// the largest of its slot and the two neighbouring slots (a schedule that
// slips by an hour is not a spike). The messages of the short window
// (default the last 10 minutes, at one-minute resolution) are a spike when
// they exceed both factor × baseline × window/1h and the absolute floor.
// After four weeks without mail the baseline starts over.
//
// Files: setup.go registers the family (Family: the three checks and the
// spike: section); config.go decodes and validates the spike: section;
// spec.go declares the checks and their findings; settings.go resolves
// each customer's limits (config.Limits of defaults: and customers:,
// validated with the core customers: section) once per config; checks.go
// and look.go are the checks; backend.go is the counter interface, with
// memory.go (snapshot.go saves it) and redis.go (run.lua, release.lua;
// batch.go runs them in the store's batch) behind it; quota.go reports a
// customer's use (command quota, admin console).
package ratelimit
