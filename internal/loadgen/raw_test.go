package loadgen

import (
	"context"
	"testing"
	"time"
)

// TestRawNopMilter drives the raw do-nothing milter with the load
// generator (d--j/go-milter's client): every message is accepted at end of
// message, with no reply asked at the other stages.
func TestRawNopMilter(t *testing.T) {
	m, err := ListenRawNop("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	res, err := Run(context.Background(), Options{Network: "tcp", Address: m.Addr().String(), Sessions: 4, Messages: 200, Size: 3000,
		Rcpts: 2, Client: "127.0.0.5", From: "load@acme.example", Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if res.Accepted != 200 || res.Refused != 0 || res.Errors != 0 {
		t.Fatalf("accepted %d refused %d errors %d (%s), want 200 accepted", res.Accepted, res.Refused, res.Errors, res.FirstError)
	}
}
