package ratelimit_test

import (
	"context"
	"strings"
	"testing"

	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/gateway"
)

// TestRateLimitExplain runs the volume checks through the real chain
// (Family as the gateway registers it, config, engine) with explain, which
// is a dry run: nothing it reserves stays counted.
func TestRateLimitExplain(t *testing.T) {
	y := `
log: {format: json}
chain: [message_size, recipients_per_message, rate_limit]
customers:
  - id: acme
    networks: [192.0.2.1]
    domains: [acme.example]
    limits: {messages_per_day: 1, recipients_per_message: 2, message_size: 300}
`
	cfg, err := config.Parse([]byte(y), "test.yaml", gateway.ConfigOptions())
	if err != nil {
		t.Fatal(err)
	}
	deps, err := gateway.OpenDeps(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer deps.Store.Close()
	st, err := gateway.Build(deps)
	if err != nil {
		t.Fatal(err)
	}
	msg := "From: a@acme.example\r\nTo: x@example.org\r\nSubject: hi\r\n\r\nHello.\r\n"
	for i := 0; i < 3; i++ {
		res, err := gateway.Explain(context.Background(), st, gateway.ExplainInput{Customer: "acme", Rcpts: []string{"x@example.org", "y@example.org", "z@example.org"}, Message: strings.NewReader(msg)})
		if err != nil {
			t.Fatal(err)
		}
		if res.Action != "accept" {
			t.Fatalf("explain %d: %+v (a dry run must not use up messages_per_day: 1)", i, res)
		}
		if got := res.RcptRefused["z@example.org"]; !strings.HasPrefix(got, "452 4.5.3 ") || len(res.RcptRefused) != 1 {
			t.Fatalf("explain %d: refused %v, want z@ with 452 4.5.3", i, res.RcptRefused)
		}
	}
	big := msg + strings.Repeat("x", 400) + "\r\n"
	res, err := gateway.Explain(context.Background(), st, gateway.ExplainInput{Customer: "acme", Message: strings.NewReader(big)})
	if err != nil {
		t.Fatal(err)
	}
	if res.Action != "reject" || res.Code != 552 || res.Enhanced != "5.3.4" || res.Check != "message_size" || res.Finding != "message_too_large" {
		t.Fatalf("big message: %+v", res)
	}
}
