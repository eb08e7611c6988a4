package headers

import (
	"context"
	"testing"

	"github.com/aupguard/aupguard/mailaddr"
	"github.com/aupguard/aupguard/policy"
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
