package gateway

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/aupguard/aupguard/internal/engine/policy"
	"github.com/aupguard/aupguard/internal/secrets"
)

// TestGatewaysOwnMailByStamp: a client that is no customer is refused at
// MAIL unless its ENVID is a stamp of the gateway's secret for that very
// sender, made within the skew; such mail is accepted without the chain
// and logged as provider_mail. A customer's mail is judged as before
// whatever its ENVID.
func TestGatewaysOwnMailByStamp(t *testing.T) {
	chk := &stubCheck{}
	e, buf, _ := newTestEngine(t, chk)
	key := secrets.Key("0123456789abcdef") // newTestEngine's secret
	now := time.Now()
	const sender = "postmaster@provider.example"
	tests := []struct {
		name, client, from, args string
		want                     policy.Action
	}{
		{"no stamp", "203.0.113.1", sender, "", policy.Reject},
		{"a valid stamp", "203.0.113.1", sender, "ENVID=" + key.ProviderStamp(sender, now), policy.Accept},
		{"lower-case keyword", "203.0.113.1", sender, "envid=" + key.ProviderStamp(sender, now) + " RET=HDRS", policy.Accept},
		{"another sender's stamp", "203.0.113.1", "billing@provider.example", "ENVID=" + key.ProviderStamp(sender, now), policy.Reject},
		{"an old stamp", "203.0.113.1", sender, "ENVID=" + key.ProviderStamp(sender, now.Add(-time.Hour)), policy.Reject},
		{"another secret's stamp", "203.0.113.1", sender, "ENVID=" + secrets.Key("fedcba9876543210").ProviderStamp(sender, now), policy.Reject},
		{"garbage", "203.0.113.1", sender, "ENVID=aupg1.x.y SIZE=10", policy.Reject},
		{"a stamp in another parameter", "203.0.113.1", sender, "X=" + key.ProviderStamp(sender, now), policy.Reject},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := e.NewSession()
			defer s.Close()
			s.Connect("c", netip.MustParseAddr(tc.client))
			if o := s.Mail(context.Background(), tc.from, tc.args, ""); o.Action != tc.want {
				t.Fatalf("MAIL %s %s: %v, want %v", tc.from, tc.args, o.Action, tc.want)
			}
		})
	}
	if n := strings.Count(buf.String(), `"finding":"provider_mail"`); n != 2 {
		t.Errorf("%d provider_mail decisions logged, want 2:\n%s", n, buf.String())
	}
	// A customer's mail with a stamp is still judged by the chain.
	buf.Reset()
	s := e.NewSession()
	s.Connect("c", netip.MustParseAddr("192.0.2.1"))
	ctx := context.Background()
	if o := s.Mail(ctx, sender, "ENVID="+key.ProviderStamp(sender, now), ""); o.Action != policy.Accept {
		t.Fatalf("customer MAIL: %v", o.Action)
	}
	s.Rcpt(ctx, "bob@example.org", "")
	s.Header("From", " <forged@bank.example>")
	s.EndOfHeaders()
	s.Body([]byte("hi\r\n"))
	if out := s.EndOfMessage(ctx, "Q1"); out.Action != policy.Reject {
		t.Fatalf("a customer's stamped mail skipped the chain: %v", out.Action)
	}
	s.Close()
}
