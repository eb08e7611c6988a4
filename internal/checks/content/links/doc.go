// Package links finds the links of a message and asks DNS URI blocklists
// about their hosts: the library under the content family's listed_url
// check.
//
// # Extraction
//
// An Extractor is fed the message as it streams by (header fields, then
// body chunks); nothing is buffered whole. A streaming MIME parser
// (github.com/emersion/go-message) decodes quoted-printable and base64 and
// converts charsets to UTF-8; text/plain parts are searched for bare URLs
// with a scheme (http, https, ftp) and "www." hosts by a small scanner
// (urlAt: at each "://" or "www." that starts a word, to the first space,
// control character or < > " `, less the sentence punctuation and
// unbalanced closing brackets a reader would leave out). mvdan.cc/xurls/v2
// was tried first and measured: its regular expression of every TLD and
// scheme took 50 ms per 50 KB newsletter over the whole text, 12 ms on
// the words around the anchors only, against about 1-2 ms for the whole
// extraction now (BenchmarkExtractNewsletter). text/html parts are read
// with the golang.org/x/net/html tokenizer: the URL attributes (href,
// src, action, formaction, background, poster, cite, data), meta refresh
// targets, and bare URLs in text outside script and style. message/rfc822 parts are
// entered. URI syntax is RFC 3986's (net/url), with the leniencies of
// browsers' URL parsers (the WHATWG URL Standard) where they change which
// host a reader reaches: tabs and newlines inside a URL dropped, "\" read
// as "/", scheme-relative "//host" URLs, and IPv4 hosts in decimal, octal
// or hex (http://3221225473/ is 192.0.0.1).
//
// A redirect-wrapped URL adds its target's host too: every query
// parameter value (u=, url=, q=, target=, redirect=, whatever its name)
// that is a URL after percent-decoding (once or twice), and a URL embedded
// in the path, up to two wrappers deep.
//
// Hosts are reduced to what the lists list: names to ASCII (IDNA, UTS #46
// non-transitional), lower case, no trailing dot, then to the registrable
// domain with the public suffix list (golang.org/x/net/publicsuffix);
// IP literals stay addresses. Hosts that are no public host (single
// labels, a bare public suffix, loopback and private addresses) and the
// customer's own domains (Options.Own: the domain, its subdomains, or a
// host whose registrable domain is one) are skipped.
//
// Bounds (Options): at most MaxTextBytes of decoded text per message
// (default 1 MiB), at most MaxHosts unique hosts kept (default 50), at
// most MaxRawBytes of the raw message parsed (default 16 MiB; it bounds
// what the MIME parser holds), 8 levels of nested parts, URLs of 4 KiB.
//
// # Lookups
//
// Lists asks the configured zones, each of a Kind, about the hosts in the
// order the message first names them: domain zones about names, KindIP
// zones about IP literals (reversed octets or nibbles, RFC 5782 §2.1,
// §2.4). The published return codes read as:
//
//   - dbl (Spamhaus DBL, https://www.spamhaus.org/faqs/domain-blocklist/):
//     127.0.1.2-127.0.1.254 listed (2 spam, 4 phish, 5 malware, 6 botnet
//     C&C, 102-106 abused legitimate domains); 127.0.1.255 "IP queries
//     prohibited" and 127.255.255.252 (typo in the zone name), .254
//     (query through a public resolver), .255 (too many queries) are
//     errors.
//   - surbl (SURBL multi, https://www.surbl.org/lists): 127.0.0.X, bits
//     of X the lists: 8 PH phishing, 16 MW malware, 64 ABUSE, 128 CR
//     cracked sites; 127.0.0.1 means the query was refused (an error).
//     Zone.Mask picks the bits that count (default 8|16|64|128).
//   - uribl (URIBL multi, https://uribl.com/about.shtml): 127.0.0.X,
//     bits 2 black, 4 grey, 8 red; 127.0.0.1 means the query was refused
//     (an error). Default mask 2 (black only).
//   - ip (a ZEN-style IP list): 127.0.0.2-9 listed (SBL, CSS, XBL,
//     DROP); 127.0.0.10-11 (PBL, end-user ranges) are not listings of a
//     web host; 127.255.255.x are errors.
//
// NXDOMAIN is "not listed". Any other answer (outside the kind's ranges,
// as a resolver that rewrites NXDOMAIN gives) is an error, never a
// listing.
//
// At most Config.MaxLookups lookups per message (default 20) over all
// hosts and zones, the hosts first named first: 500 links cost no more.
// Config.Concurrency at once (default 4), all under Config.Timeout
// (default 3s). Each lookup is one LookupIPAddr of the provider's resolver
// (internal/resolver.Cache: cached for the answer's TTL, identical
// questions in flight asked once); that resolver asks A and AAAA, so a
// lookup is two DNS questions.
//
// # Use
//
// A check wires the two halves like this (the body stage, then end of
// message):
//
//	// Body(t): one Extractor per message, fed the received header fields.
//	e := links.NewExtractor(links.Options{Own: customerDomains})
//	for _, h := range t.Headers {
//		e.Header(h.Name, h.Value)
//	}
//	return e // the chain writes the body chunks and calls Close
//
//	// EOM(ctx, t): the hosts, then the lists (one *Lists for the config).
//	found := e.Links()
//	res := lists.Check(ctx, found.Hosts)
//	if res.Listed() {
//		first := res.Listings[0] // first listed in message order
//		// reject 5.7.1 naming first.Domain; log zone, code, meaning, URL
//	}
//
// Host.URL and Listing.URL are text of the message, cut to 200 bytes:
// untrusted, to be quoted in logs and escaped in the console.
//
// # The listed_url check
//
// listed_url refuses a message that links to a host on a configured URI
// blocklist. At end of message it takes the hosts the Extractor found in
// the message (fed during the body stage, so no extra pass), asks the
// zones, and:
//
//   - a listing (any zone, any host) is a finding: by default reject
//     with 5.7.1 naming the listed domain (the first listed in message
//     order: Result.Listings[0].Domain); the zone, code, meaning and URL
//     go to the log and the decision record;
//   - lookup errors (failed queries, timeouts, and the lists' error
//     codes: Spamhaus 127.255.255.252/254/255 and 127.0.1.255, SURBL and
//     URIBL 127.0.0.1, undocumented answers) never refuse: a message with
//     errors only passes, the errors are logged; when no lookup answered
//     at all the check's on_error outcome applies;
//   - a message with no links, or only links to the customer's own
//     domains, costs no lookup.
//
// Its configuration: zones (each zone: NAME, kind: dbl|surbl|uribl|ip,
// and mask for surbl and uribl), max_lookups (default 20), concurrency
// (4), timeout (3s), max_text_bytes (1 MiB), max_hosts (50), and the
// customer's own domains skipped (the customer's configured sending
// domains).
//
// The lists see the registrable domains a message links to (and the IP
// literals), asked through the provider's resolver; nothing else of the
// message leaves the gateway. Public mirrors of these lists refuse
// queries from public resolvers and above a volume: a provider needs its
// own resolver or a data feed, and the error codes above tell when it has
// neither.
package links
