// Package reputation closes the loop between what the gateway accepted and
// what became of it: it reads Postfix's delivery results (the log lines of
// its delivery agents), matches them to customers through the queue id the
// gateway recorded when it accepted the message, counts per customer the
// mail sent, the hard bounces (recipients that do not exist), the policy
// refusals and the deferrals, and judges the bounce rate at end of message
// (check bounce_rate). It also watches DNS blocklists for the provider's
// egress addresses and, on a listing, tells the postmaster who sent most
// through the listed address.
//
// The AUP clauses it enforces are in docs/reputation.md.
package reputation
