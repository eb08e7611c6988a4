package auth

import (
	"crypto"
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/aupguard/aupguard/internal/engine/policy"
)

var egress = []netip.Addr{netip.MustParseAddr("203.0.113.1"), netip.MustParseAddr("203.0.113.2")}

const checksZone = `
pass.example.            TXT "v=spf1 ip4:203.0.113.0/24 -all"
fail.example.            TXT "v=spf1 ip4:192.0.2.0/24 -all"
soft.example.            TXT "v=spf1 ~all"
neutral.example.         TXT "v=spf1 ?all"
perm.example.            TXT "v=spf1 bogus:thing -all"
half.example.            TXT "v=spf1 ip4:203.0.113.1 -all"
include.example.         TXT "v=spf1 include:pass.example -all"
tempspf.example.         SERVFAIL
helo.example.net.        TXT "v=spf1 ip4:203.0.113.0/24 -all"

reject.example.          TXT "v=spf1 ip4:192.0.2.0/24 -all"
_dmarc.reject.example.   TXT "v=DMARC1; p=reject; rua=mailto:d@reject.example"
bounce.reject.example.   TXT "v=spf1 ip4:203.0.113.0/24 -all"
quarantine.example.      TXT "v=spf1 -all"
_dmarc.quarantine.example. TXT "v=DMARC1; p=quarantine"
none.example.            TXT "v=spf1 -all"
_dmarc.none.example.     TXT "v=DMARC1; p=none"
norecord.example.        TXT "v=spf1 -all"
subpol.example.          TXT "v=spf1 -all"
_dmarc.subpol.example.   TXT "v=DMARC1; p=reject; sp=none"
strict.example.          TXT "v=spf1 -all"
_dmarc.strict.example.   TXT "v=DMARC1; p=reject; adkim=s; aspf=s"
bounce.strict.example.   TXT "v=spf1 ip4:203.0.113.0/24 -all"
bad.example.             TXT "v=spf1 -all"
_dmarc.bad.example.      TXT "v=DMARC1; p=maybe"
_dmarc.tempdmarc.example. SERVFAIL
tempdmarc.example.       TXT "v=spf1 -all"
multi.example.           TXT "v=spf1 -all"
_dmarc.multi.example.    TXT "v=DMARC1; p=reject"
_dmarc.multi.example.    TXT "v=DMARC1; p=none"
_dmarc.multi.example.    TXT "v=spf1 -all"
tempkey._domainkey.reject.example. SERVFAIL
`

type decisionCase struct {
	name     string
	mailFrom string
	helo     string
	// egressHelo is the provider's egress HELO name (SPFCheck.WithHelo).
	egressHelo string
	from       string // From header address
	// custSign signs the message as the customer's MTA would: domain,
	// selector (published unless "nokey" or "tempkey").
	custSign string
	custSel  string
	mangle   bool // change the body after the customer signed it
	gwKey    string
	require  *bool
	// expectations
	want     []string // check/finding in chain order
	action   policy.Action
	reply    string // prefix of the reply, when refused
	aligned  bool
	known    bool
	spf      string
	dmarcPol string
}

func yes() *bool { b := true; return &b }

func TestDecisions(t *testing.T) {
	rk, ek, _ := testKeys(t)
	zone := checksZone +
		keyRecord(t, "cust", "reject.example", rk) +
		keyRecord(t, "cust", "strict.example", ek) +
		keyRecord(t, "cust", "third.example", rk)
	keys := map[string]crypto.Signer{"reject.example": rk, "strict.example": ek, "none.example": rk, "tempdmarc.example": rk, "sub.tempdmarc.example": rk}
	tests := []decisionCase{
		// SPF alone.
		{name: "spf pass (aligned, no record: DMARC would pass)", mailFrom: "a@pass.example", from: "a@pass.example", want: nil, action: policy.Accept, spf: "pass", known: true},
		{name: "spf via include", mailFrom: "a@include.example", from: "a@include.example", want: nil, action: policy.Accept, spf: "pass", known: true},
		{name: "spf fail", mailFrom: "a@fail.example", from: "a@fail.example", want: []string{"spf/spf_fail", "dmarc/dmarc_no_record"}, action: policy.Accept, spf: "fail", known: true},
		{name: "spf softfail", mailFrom: "a@soft.example", from: "a@soft.example", want: []string{"spf/spf_softfail", "dmarc/dmarc_no_record"}, action: policy.Accept, spf: "softfail", known: true},
		{name: "spf neutral", mailFrom: "a@neutral.example", from: "a@neutral.example", want: []string{"spf/spf_neutral", "dmarc/dmarc_no_record"}, action: policy.Accept, spf: "neutral", known: true},
		{name: "spf none", mailFrom: "a@nothing.example", from: "a@nothing.example", want: []string{"spf/spf_none", "dmarc/dmarc_no_record"}, action: policy.Accept, spf: "none", known: true},
		{name: "spf permerror", mailFrom: "a@perm.example", from: "a@perm.example", want: []string{"spf/spf_permerror", "dmarc/dmarc_no_record"}, action: policy.Accept, spf: "permerror", known: true},
		{name: "spf must pass for every egress address", mailFrom: "a@half.example", from: "a@half.example", want: []string{"spf/spf_fail", "dmarc/dmarc_no_record"}, action: policy.Accept, spf: "fail", known: true},
		{name: "spf temperror defers at MAIL", mailFrom: "a@tempspf.example", from: "a@tempspf.example", want: []string{"spf/check_error"}, action: policy.Defer, reply: "451 4.4.3"},
		{name: "null sender uses the provider's HELO", mailFrom: "<>", helo: "customer.example", egressHelo: "helo.example.net", from: "a@pass.example", want: []string{"dmarc/dmarc_no_record"}, action: policy.Accept, spf: "pass", known: true},
		{name: "null sender is not judged on the customer's HELO", mailFrom: "<>", helo: "helo.example.net", from: "a@pass.example", want: []string{"spf/spf_none", "dmarc/dmarc_no_record"}, action: policy.Accept, spf: "none", known: true},

		// DMARC decisions.
		{name: "p=reject unaligned is refused with 5.7.26", mailFrom: "a@reject.example", from: "a@reject.example", want: []string{"spf/spf_fail", "dmarc/dmarc_reject"}, action: policy.Reject, reply: "550 5.7.26 DMARC policy of reject.example", known: true, spf: "fail", dmarcPol: "reject"},
		{name: "p=reject with the customer's aligned signature", mailFrom: "a@reject.example", from: "a@reject.example", custSign: "reject.example", custSel: "cust", want: []string{"spf/spf_fail"}, action: policy.Accept, aligned: true, known: true, spf: "fail", dmarcPol: "reject"},
		{name: "p=reject, signature of another domain", mailFrom: "a@reject.example", from: "a@reject.example", custSign: "third.example", custSel: "cust", want: []string{"spf/spf_fail", "dmarc/dmarc_reject"}, action: policy.Reject, reply: "550 5.7.26", known: true, spf: "fail", dmarcPol: "reject"},
		{name: "p=reject, aligned SPF (relaxed) passes", mailFrom: "b@bounce.reject.example", from: "a@reject.example", want: nil, action: policy.Accept, known: true, spf: "pass", dmarcPol: "reject"},
		{name: "p=reject, gateway signs", mailFrom: "a@reject.example", from: "a@reject.example", gwKey: "reject.example", want: []string{"spf/spf_fail"}, action: policy.Accept, aligned: true, known: true, spf: "fail", dmarcPol: "reject"},
		{name: "p=reject, body changed after signing", mailFrom: "a@reject.example", from: "a@reject.example", custSign: "reject.example", custSel: "cust", mangle: true, want: []string{"spf/spf_fail", "dkim/dkim_fail", "dmarc/dmarc_reject"}, action: policy.Reject, reply: "550 5.7.26", known: true, spf: "fail", dmarcPol: "reject"},
		{name: "p=reject, no key published", mailFrom: "a@reject.example", from: "a@reject.example", custSign: "reject.example", custSel: "nokey", want: []string{"spf/spf_fail", "dkim/dkim_permerror", "dmarc/dmarc_reject"}, action: policy.Reject, reply: "550 5.7.26", known: true, spf: "fail", dmarcPol: "reject"},
		{name: "key lookup temperror defers", mailFrom: "a@reject.example", from: "a@reject.example", custSign: "reject.example", custSel: "tempkey", want: []string{"spf/spf_fail", "dkim/check_error"}, action: policy.Defer, reply: "451 4.4.3", known: true, spf: "fail"},
		{name: "p=quarantine unaligned", mailFrom: "a@quarantine.example", from: "a@quarantine.example", want: []string{"spf/spf_fail", "dmarc/dmarc_quarantine"}, action: policy.Reject, reply: "550 5.7.26", known: true, spf: "fail", dmarcPol: "quarantine"},
		{name: "p=none unaligned is reported", mailFrom: "a@none.example", from: "a@none.example", want: []string{"spf/spf_fail", "dmarc/dmarc_unaligned"}, action: policy.Accept, known: true, spf: "fail", dmarcPol: "none"},
		{name: "p=none unaligned, alignment required", mailFrom: "a@none.example", from: "a@none.example", require: yes(), want: []string{"spf/spf_fail", "dmarc/dmarc_unaligned"}, action: policy.Reject, reply: "550 5.7.26 Mail from none.example must pass", known: true, spf: "fail", dmarcPol: "none"},
		{name: "p=none, gateway signs, alignment required", mailFrom: "a@none.example", from: "a@none.example", gwKey: "none.example", require: yes(), want: []string{"spf/spf_fail"}, action: policy.Accept, aligned: true, known: true, spf: "fail", dmarcPol: "none"},
		{name: "no record, alignment required", mailFrom: "a@norecord.example", from: "a@norecord.example", require: yes(), want: []string{"spf/spf_fail", "dmarc/dmarc_no_record"}, action: policy.Reject, reply: "550 5.7.26", known: true, spf: "fail"},
		{name: "invalid record is no record", mailFrom: "a@bad.example", from: "a@bad.example", want: []string{"spf/spf_fail", "dmarc/dmarc_no_record"}, action: policy.Accept, known: true, spf: "fail"},
		{name: "subdomain falls back to the org record's sp=", mailFrom: "a@subpol.example", from: "a@news.subpol.example", want: []string{"spf/spf_fail", "dmarc/dmarc_unaligned"}, action: policy.Accept, known: true, spf: "fail", dmarcPol: "none"},
		{name: "subdomain falls back to the org record's p=", mailFrom: "a@reject.example", from: "a@news.reject.example", want: []string{"spf/spf_fail", "dmarc/dmarc_reject"}, action: policy.Reject, reply: "550 5.7.26 DMARC policy of news.reject.example", known: true, spf: "fail", dmarcPol: "reject"},
		{name: "subdomain, gateway key of the parent (relaxed)", mailFrom: "a@reject.example", from: "a@news.reject.example", gwKey: "reject.example", want: []string{"spf/spf_fail"}, action: policy.Accept, aligned: true, known: true, spf: "fail", dmarcPol: "reject"},
		{name: "adkim=s: parent key is not aligned", mailFrom: "a@strict.example", from: "a@news.strict.example", gwKey: "strict.example", want: []string{"spf/spf_fail", "dmarc/dmarc_reject"}, action: policy.Reject, reply: "550 5.7.26", known: true, spf: "fail", dmarcPol: "reject"},
		{name: "aspf=s: subdomain SPF is not aligned", mailFrom: "b@bounce.strict.example", from: "a@strict.example", want: []string{"dmarc/dmarc_reject"}, action: policy.Reject, reply: "550 5.7.26", known: true, spf: "pass", dmarcPol: "reject"},
		{name: "adkim=s: exact Ed25519 signature", mailFrom: "a@strict.example", from: "a@strict.example", custSign: "strict.example", custSel: "cust", want: []string{"spf/spf_fail"}, action: policy.Accept, aligned: true, known: true, spf: "fail", dmarcPol: "reject"},
		{name: "dmarc temperror defers with 4.4.3", mailFrom: "a@tempdmarc.example", from: "a@tempdmarc.example", want: []string{"spf/spf_fail", "dmarc/check_error"}, action: policy.Defer, reply: "451 4.4.3", known: true, spf: "fail"},
		// RFC 7489 §6.6.3: two DMARC records are no policy (not the first).
		{name: "several DMARC records mean no policy", mailFrom: "a@multi.example", from: "a@multi.example", want: []string{"spf/spf_fail", "dmarc/dmarc_no_record"}, action: policy.Accept, known: true, spf: "fail"},
		// A failed lookup matters only when the record could change the outcome.
		{name: "dmarc temperror, exact gateway signature passes", mailFrom: "a@tempdmarc.example", from: "a@tempdmarc.example", gwKey: "tempdmarc.example", want: []string{"spf/spf_fail"}, action: policy.Accept, aligned: true, known: true, spf: "fail", dmarcPol: "unknown"},
		{name: "dmarc temperror, relaxed-only signature defers", mailFrom: "a@tempdmarc.example", from: "a@news.tempdmarc.example", gwKey: "tempdmarc.example", want: []string{"spf/spf_fail", "dmarc/check_error"}, action: policy.Defer, reply: "451 4.4.3", aligned: true, known: true, spf: "fail"},
	}
	r, _ := newResolver(t, zone)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gw := Keys{}
			if tt.gwKey != "" {
				gw["acme"] = []Key{{Domain: tt.gwKey, Selector: "gw", Signer: keys[tt.gwKey]}}
			}
			require := map[string]bool{}
			if tt.require != nil {
				require["acme"] = *tt.require
			}
			chain := steps(
				NewSPF(egress, r, time.Second).WithHelo(tt.egressHelo),
				NewDKIM(r, 5, time.Second),
				NewDMARC(r, time.Second, require, false),
				NewSigner(gw, SignOptions{Headers: []string{"From", "To", "Subject"}}, nil),
			)
			msg := crlfMsg(fmt.Sprintf("From: Sender <%s>\nTo: rcpt@example.net\nSubject: test\nDate: Mon, 23 Nov 2026 09:00:00 +0000\nMessage-ID: <%s@x>\n\nHello.\n", tt.from, strings.ReplaceAll(tt.name, " ", "")))
			if tt.custSign != "" {
				var signer crypto.Signer = rk
				if tt.custSign == "strict.example" {
					signer = ek
				}
				msg = customerSign(t, msg, tt.custSign, tt.custSel, signer)
				if tt.mangle {
					msg = strings.Replace(msg, "Hello.", "Hello!", 1)
				}
			}
			out := run(t, chain, envelope{mailFrom: tt.mailFrom, helo: tt.helo}, msg)
			got := findings(out.mail, out.eom)
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("findings %q, want %q", got, tt.want)
			}
			v := out.eom
			if out.mail.Action.Decisive() {
				v = out.mail
			}
			if v.Action != tt.action {
				t.Fatalf("action %v, want %v (%+v)", v.Action, tt.action, v)
			}
			if tt.reply != "" && !strings.HasPrefix(v.Reply.String(), tt.reply) {
				t.Fatalf("reply %q, want prefix %q", v.Reply, tt.reply)
			}
			aligned, known := DKIMAligned(out.txn)
			if aligned != tt.aligned || known != tt.known {
				t.Fatalf("DKIMAligned = %v, %v; want %v, %v", aligned, known, tt.aligned, tt.known)
			}
			if s, ok := SPF(out.txn); tt.spf != "" && (!ok || s.Result != tt.spf) {
				t.Fatalf("SPF = %+v %v, want %s", s, ok, tt.spf)
			}
			if d, ok := DMARC(out.txn); ok && d.Policy != tt.dmarcPol {
				t.Fatalf("DMARC policy %q, want %q", d.Policy, tt.dmarcPol)
			}
			signed := strings.Contains(out.signed, "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d="+tt.gwKey) ||
				strings.Contains(out.signed, "DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed; d="+tt.gwKey)
			if wantSigned := tt.gwKey != "" && v.Action == policy.Accept; signed != wantSigned {
				t.Fatalf("gateway signature present %v, want %v", signed, wantSigned)
			}
		})
	}
}

func TestDMARCFindingAttrs(t *testing.T) {
	r, _ := newResolver(t, checksZone)
	chain := steps(NewSPF(egress, r, time.Second), NewDMARC(r, time.Second, nil, false))
	out := run(t, chain, envelope{mailFrom: "a@reject.example"}, crlfMsg("From: a@Reject.Example\nSubject: x\n\nbody\n"))
	res := out.eom.Results
	if len(res) != 1 {
		t.Fatalf("results %+v", res)
	}
	a := res[0].Finding.Attrs
	if a["domain"] != "reject.example" || a["policy"] != "reject" || !strings.HasPrefix(a["spf"], "fail") || a["dkim"] != "none" {
		t.Fatalf("attrs %v", a)
	}
	if strings.Contains(res[0].Finding.Detail, "rcpt@") {
		t.Fatalf("detail names a recipient: %s", res[0].Finding.Detail)
	}
}

func TestNoSingleFromDomain(t *testing.T) {
	r, _ := newResolver(t, checksZone)
	chain := steps(NewDKIM(r, 5, time.Second), NewDMARC(r, time.Second, nil, true))
	for name, msg := range map[string]string{
		"no From":        "Subject: x\n\nbody\n",
		"two From":       "From: a@reject.example\nFrom: b@reject.example\n\nbody\n",
		"two mailboxes":  "From: a@reject.example, b@none.example\n\nbody\n",
		"unparsable":     "From: <<<\n\nbody\n",
		"domain literal": "From: a@[192.0.2.1]\n\nbody\n",
	} {
		t.Run(name, func(t *testing.T) {
			out := run(t, chain, envelope{mailFrom: "a@reject.example"}, crlfMsg(msg))
			if len(out.eom.Results) != 0 {
				t.Fatalf("findings %v", findings(out.eom))
			}
			if _, known := DKIMAligned(out.txn); known {
				t.Fatal("alignment known without a From domain")
			}
		})
	}
}

func TestDKIMAlignedWithoutDMARC(t *testing.T) {
	rk, _, _ := testKeys(t)
	r, _ := newResolver(t, keyRecord(t, "cust", "mail.example.com", rk))
	tests := []struct {
		name          string
		chain         *policy.Chain
		from          string
		sign          bool
		aligned, know bool
	}{
		{"no auth check ran", steps(), "a@example.com", true, false, false},
		{"relaxed: signature of a subdomain", steps(NewDKIM(r, 5, time.Second)), "a@example.com", true, true, true},
		{"unsigned", steps(NewDKIM(r, 5, time.Second)), "a@example.com", false, false, true},
		{"other organization", steps(NewDKIM(r, 5, time.Second)), "a@example.org", true, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg := crlfMsg("From: " + tt.from + "\nSubject: x\n\nbody\n")
			if tt.sign {
				msg = customerSign(t, msg, "mail.example.com", "cust", rk)
			}
			out := run(t, tt.chain, envelope{mailFrom: "a@example.com"}, msg)
			if a, k := DKIMAligned(out.txn); a != tt.aligned || k != tt.know {
				t.Fatalf("DKIMAligned = %v %v, want %v %v", a, k, tt.aligned, tt.know)
			}
		})
	}
}

func TestDKIMAbortedMessageEndsVerifier(t *testing.T) {
	rk, _, _ := testKeys(t)
	r, _ := newResolver(t, keyRecord(t, "cust", "example.com", rk))
	c := NewDKIM(r, 5, time.Second)
	msg := customerSign(t, crlfMsg("From: a@example.com\nSubject: x\n\n"+strings.Repeat("body line\n", 1000)), "example.com", "cust", rk)
	txn := policy.NewTxn(&policy.Conn{}, testCustomer, "r", testNow)
	hdrs, off := splitForTest(msg)
	txn.Headers = hdrs
	w := c.Body(txn)
	if w == nil {
		t.Fatal("no verifier for a signed message")
	}
	if _, err := w.Write([]byte(msg[off : off+100])); err != nil {
		t.Fatal(err)
	}
	v, _ := verifyOf.Get(txn)
	c.Finish(t.Context(), txn, false)
	select {
	case <-v.done:
	case <-time.After(2 * time.Second):
		t.Fatal("verifier goroutine still running after Finish")
	}
}

// TestDNSBoundedByTimeout: however many lookups SPF or DMARC need, the
// check gives up after one DNS timeout with 451 4.4.3, not when the
// milter's decision timeout cuts it.
func TestDNSBoundedByTimeout(t *testing.T) {
	r, _ := newResolver(t, `
slow.example.          TXT "v=spf1 include:lazy1.example include:lazy2.example include:lazy3.example -all"
lazy1.example.         DELAY 150ms
lazy1.example.         TXT "v=spf1 ip4:198.51.100.1 -all"
lazy2.example.         DELAY 150ms
lazy2.example.         TXT "v=spf1 ip4:198.51.100.2 -all"
lazy3.example.         DELAY 150ms
lazy3.example.         TXT "v=spf1 ip4:198.51.100.3 -all"
_dmarc.sub.lazy1.example. DELAY 150ms
_dmarc.lazy1.example.  DELAY 150ms
`)
	const timeout = 250 * time.Millisecond
	tests := []struct {
		name  string
		check *policy.Chain
		from  string
	}{
		{"spf", steps(NewSPF(egress, r, timeout)), "a@slow.example"},
		{"dmarc", steps(NewDMARC(r, timeout, nil, false)), "a@sub.lazy1.example"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			out := run(t, tt.check, envelope{mailFrom: tt.from}, crlfMsg("From: "+tt.from+"\nSubject: x\n\nbody\n"))
			took := time.Since(start)
			v := out.eom
			if out.mail.Action.Decisive() {
				v = out.mail
			}
			if v.Action != policy.Defer || v.Reply.Enhanced() != "4.4.3" {
				t.Fatalf("verdict %v %v, want defer 4.4.3", v.Action, v.Reply)
			}
			if took > timeout+150*time.Millisecond {
				t.Fatalf("took %s with a %s DNS timeout", took, timeout)
			}
		})
	}
}
