package headers

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/customer"
	"github.com/aupguard/aupguard/internal/engine/policy"
	"github.com/aupguard/aupguard/internal/mailaddr"
	"github.com/aupguard/aupguard/internal/testkit/golden"
)

// Golden files: testdata/NAME.eml is a message as the client submits it
// (Postfix does not pass the Received: it adds to milters);
// testdata/NAME.want names the envelope in "# key: value" lines (customer,
// mail_from, client) and lists the expected "check/finding"
// names, one per line (none: the message must pass). Every case runs
// under testdata/config.yaml. go test -run TestGolden -update rewrites
// the .want files with what the checks found (package internal/golden).

// GoldenCase is one golden file with its envelope and expectations.
type goldenCase struct {
	Name     string
	Customer string
	MailFrom string
	Client   string
	Want     []string
	Message  []byte
	File     *golden.File
}

func loadGolden(t *testing.T) []goldenCase {
	t.Helper()
	files, err := filepath.Glob("testdata/*.eml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	var out []goldenCase
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".eml")
		msg, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		w := golden.Read(t, strings.TrimSuffix(f, ".eml")+".want")
		sort.Strings(w.Lines)
		c := goldenCase{Name: name, Message: msg, Want: w.Lines, File: w,
			Customer: w.Env["customer"], MailFrom: w.Env["mail_from"], Client: w.Env["client"]}
		if c.Customer == "" {
			t.Fatalf("%s.want names no customer", name)
		}
		out = append(out, c)
	}
	return out
}

func loadGoldenConfig(t *testing.T) *config.Config {
	t.Helper()
	cfg, err := config.Load("testdata/config.yaml", config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// chainFor builds a chain of the three header checks, as the gateway does.
func chainFor(t *testing.T, cfg *config.Config) *policy.Chain {
	t.Helper()
	s, err := SettingsFromConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return policy.NewChain([]policy.Step{
		{Check: NewSyntax(s), Enabled: true, OnError: policy.Defer},
		{Check: NewIdentity(s), Enabled: true, OnError: policy.Defer},
		{Check: NewForgery(s), Enabled: true, OnError: policy.Defer},
	})
}

// runMessage runs the MAIL and EOM stages in monitor mode (so every check
// runs) and returns the sorted "check/finding" names and the EOM verdict.
func runMessage(t *testing.T, chain *policy.Chain, dir *customer.Directory, c goldenCase) ([]string, policy.Verdict) {
	t.Helper()
	cust, ok := dir.ByID(c.Customer)
	if !ok {
		t.Fatalf("unknown customer %q", c.Customer)
	}
	mon := *cust
	mon.Mode = policy.Monitor
	conn := &policy.Conn{}
	if c.Client != "" {
		conn.ClientAddr = netip.MustParseAddr(c.Client)
	}
	txn := policy.NewTxn(conn, &mon, "ref", time.Unix(0, 0))
	from, err := mailaddr.Parse(c.MailFrom)
	if err != nil && err != mailaddr.ErrNoDomain {
		t.Fatalf("mail_from %q: %v", c.MailFrom, err)
	}
	txn.MailFrom = from
	hs, body := SplitHeader(c.Message)
	txn.Headers = hs
	txn.HeaderBytes = int64(body)
	ctx := context.Background()
	mv := chain.Mail(ctx, txn)
	ev := chain.EOM(ctx, txn)
	seen := map[string]bool{}
	var got []string
	for _, r := range append(mv.Results, ev.Results...) {
		n := r.Check + "/" + r.Finding.Name
		if !seen[n] {
			seen[n] = true
			got = append(got, n)
		}
	}
	sort.Strings(got)
	if got == nil {
		got = []string{}
	}
	return got, ev
}

func TestGolden(t *testing.T) {
	cfg := loadGoldenConfig(t)
	dir, err := customer.NewDirectory(cfg)
	if err != nil {
		t.Fatal(err)
	}
	chain := chainFor(t, cfg)
	for _, c := range loadGolden(t) {
		t.Run(c.Name, func(t *testing.T) {
			got, _ := runMessage(t, chain, dir, c)
			c.File.Check(t, got)
			specs := policy.SpecIndex([]policy.Spec{SyntaxSpec, IdentitySpec, ForgerySpec})
			for _, g := range got {
				check, finding, _ := strings.Cut(g, "/")
				if _, ok := specs[check].Finding(finding); !ok {
					t.Errorf("check %s reported %s, which its spec does not declare", check, finding)
				}
			}
		})
	}
}

// TestGoldenReplies checks that whatever a violating golden message is
// refused for, the client sees 550 5.7.1 with a short generic text (no
// detail, no address).
func TestGoldenReplies(t *testing.T) {
	cfg := loadGoldenConfig(t)
	dir, err := customer.NewDirectory(cfg)
	if err != nil {
		t.Fatal(err)
	}
	chain := chainFor(t, cfg)
	for _, c := range loadGolden(t) {
		if len(c.Want) == 0 {
			continue
		}
		t.Run(c.Name, func(t *testing.T) {
			cust, _ := dir.ByID(c.Customer)
			conn := &policy.Conn{}
			txn := policy.NewTxn(conn, cust, "ref", time.Unix(0, 0))
			txn.MailFrom, _ = mailaddr.Parse(c.MailFrom)
			txn.Headers, _ = SplitHeader(c.Message)
			v := chain.Mail(context.Background(), txn)
			if !v.Action.Decisive() {
				v = chain.EOM(context.Background(), txn)
			}
			if v.Action != policy.Reject {
				t.Fatalf("action %v, want reject", v.Action)
			}
			if v.Reply.Code() != 550 || v.Reply.Enhanced() != "5.7.1" {
				t.Errorf("reply %q, want 550 5.7.1", v.Reply)
			}
			if v.Reply != ReplySender && v.Reply != ReplyForged {
				t.Errorf("reply text %q is not one of the generic texts", v.Reply.Text())
			}
		})
	}
}
