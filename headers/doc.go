// Package headers enforces the AUP clauses on forged headers and sender
// identity: a customer may only send as its own domains, may not pose as
// another sender in a display name, may not forge the provider's trace and
// authentication fields or the message's origin, and must present header
// data clearly (no NUL, bare CR/LF, over-long lines, hidden control
// characters, absurd header sections).
//
// Three checks plug into the policy chain:
//
//   - header_syntax (EOM): malformed or obfuscating header data.
//   - sender_identity (MAIL FROM and EOM): envelope sender, From:, Sender:
//     and display names against the customer's domains.
//   - header_forgery (EOM): duplicated singleton fields, missing Date:/From:,
//     provider Received: injected by the client, forged
//     (ARC-)Authentication-Results, client Return-Path:, origin headers
//     naming a foreign address.
//
// The package also holds the parsers these checks rely on, each tolerant of
// any input (they never panic or loop; see the fuzz targets): an RFC 5322
// address-list parser with RFC 2047 display-name decoding, a Received:
// clause parser and an authserv-id extractor.
package headers
