package headers

import (
	"context"
	"testing"

	"github.com/aupguard/aupguard/internal/engine/policy"
	"github.com/aupguard/aupguard/internal/mailaddr"
)

// TestIdentityMailLocalLogin: the envelope sender of local mail that is
// the submitting login's own address at the host (Postfix-bound) is the
// customer's, although the host's domain is not; the same address over
// SMTP, or in local mail not attributed by login, is not.
func TestIdentityMailLocalLogin(t *testing.T) {
	c := NewIdentity(&Settings{})
	cust := testCustomer(t, "acme.example")
	a, _ := mailaddr.Parse("web1@mta1.provider.test")
	tests := []struct {
		name string
		conn *policy.Conn
		want int
	}{
		{"local, by login", &policy.Conn{Local: true, LocalLogin: "web1"}, 0},
		{"local, not by login", &policy.Conn{Local: true}, 1},
		{"SMTP", &policy.Conn{}, 1},
		{"no connection", nil, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs, err := c.Mail(context.Background(), &policy.Txn{Conn: tt.conn, Customer: cust, MailFrom: a})
			if err != nil || len(fs) != tt.want || tt.want == 1 && fs[0].Name != FindingMailFromNotOwned {
				t.Fatalf("findings %v, err %v; want %d", fs, err, tt.want)
			}
		})
	}
}

// TestForgeryLocalStandaloneReceived: the trace field Postfix's stand-alone
// smtpd (sendmail -bs) writes on top of a local message is the provider's,
// not a forgery; the same text over SMTP, below the top, or naming another
// host or a non-local client is judged as usual.
func TestForgeryLocalStandaloneReceived(t *testing.T) {
	host, err := mailaddr.ParsePattern("mta1.provider.test")
	if err != nil {
		t.Fatal(err)
	}
	s := &Settings{Provider: Provider{Hostnames: []mailaddr.Pattern{host}}}
	c := NewForgery(s)
	bs := " from app (localhost [127.0.0.1])\r\n\tby mta1.provider.test (Postfix) with ESMTP id C7AF7984803\r\n\tfor <r@example.net>; Mon, 30 Nov 2026 00:20:40 +0000 (UTC)"
	forged := " by mta1.provider.test (Postfix, from userid 0)"
	other := " from app (client.example [192.0.2.1])\r\n\tby mta1.provider.test (Postfix) with ESMTP id C7AF7984803; Mon, 30 Nov 2026 00:20:40 +0000 (UTC)"
	tests := []struct {
		name    string
		local   bool
		headers []string
		forged  bool
	}{
		{"local -bs trace on top", true, []string{bs}, false},
		{"SMTP: same text is a forgery", false, []string{bs}, true},
		{"local: not on top", true, []string{forged, bs}, true},
		{"local: pickup-style line claiming uid 0", true, []string{forged}, true},
		{"local: remote client", true, []string{other}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			txn := &policy.Txn{Conn: &policy.Conn{Local: tt.local}, Customer: testCustomer(t, "acme.example")}
			for _, v := range tt.headers {
				txn.Headers = append(txn.Headers, policy.Header{Name: "Received", Value: v})
			}
			txn.Headers = append(txn.Headers, policy.Header{Name: "From", Value: " a@acme.example"}, policy.Header{Name: "Date", Value: " Mon, 30 Nov 2026 00:20:40 +0000"})
			fs, err := c.EOM(context.Background(), txn)
			if err != nil {
				t.Fatal(err)
			}
			got := false
			for _, f := range fs {
				if f.Name == FindingReceivedForged {
					got = true
				}
			}
			if got != tt.forged {
				t.Fatalf("findings %v, want forged=%v", fs, tt.forged)
			}
		})
	}
}
