package main

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/aupguard/aupguard/internal/loadgen"
)

// TestBenchDrivesAMilter: bench sends every message to a do-nothing milter
// (both raw and library ones), as many distinct generated customers, and
// reports them all accepted with exit status 0.
func TestBenchDrivesAMilter(t *testing.T) {
	for _, raw := range []bool{false, true} {
		t.Run(fmt.Sprintf("raw=%v", raw), func(t *testing.T) {
			var m interface{ Close() error }
			var addr string
			if raw {
				r, err := loadgen.ListenRawNop("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				m, addr = r, r.Addr().String()
			} else {
				n, err := loadgen.ListenNop("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				m, addr = n, n.Addr().String()
			}
			defer m.Close()
			var out, errb bytes.Buffer
			code := runMain([]string{"bench", "-milter", "inet:" + addr, "-sessions", "2", "-messages", "40", "-size", "512", "-customers", "5", "-customers-by", "login"}, &out, &errb)
			if code != 0 || !strings.Contains(out.String(), "messages 40 accepted 40 refused 0 errors 0") {
				t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out.String(), errb.String())
			}
		})
	}
}

// TestBadInvocationsExit2: an unknown command, a bad milter address or an
// unknown -customers-by is a usage error with its reason, nothing sent.
func TestBadInvocationsExit2(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown command", []string{"serve"}, `unknown command "serve"`},
		{"bad milter address", []string{"bench", "-milter", "nowhere"}, "nowhere"},
		{"unknown customers-by", []string{"bench", "-customers", "2", "-customers-by", "shoe"}, "want network, login or glob"},
		{"gen-config argument", []string{"gen-config", "extra"}, "want only flags"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			if code := runMain(tc.args, &out, &errb); code != 2 || !strings.Contains(errb.String(), tc.want) {
				t.Errorf("exit %d, stderr %q; want 2 and %q", code, errb.String(), tc.want)
			}
		})
	}
}

// TestGenConfigWritesTheCustomers: gen-config writes the asked number of
// customers with the store section given.
func TestGenConfigWritesTheCustomers(t *testing.T) {
	var out, errb bytes.Buffer
	if code := runMain([]string{"gen-config", "-customers", "3", "-logins", "2", "-store", "backend: memory"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	s := out.String()
	if !strings.HasPrefix(s, "store:\n  backend: memory\ncustomers:\n") || strings.Count(s, "  - id: c") != 3 || !strings.Contains(s, "c2-l1") {
		t.Errorf("gen-config wrote:\n%s", s)
	}
}
