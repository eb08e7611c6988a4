package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aupguard/aupguard/internal/checks/optout"
	"github.com/aupguard/aupguard/internal/secrets"
)

func TestOptoutCommands(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "aupguard.yaml")
	os.MkdirAll(filepath.Join(dir, "store"), 0o700)
	// A secret file of its own: secrets.Load returns a different key on the
	// run that creates store/secret than on later runs (reported to the lead).
	os.WriteFile(filepath.Join(dir, "store", "secret"), []byte("0123456789abcdef0123456789abcdef\n"), 0o600)
	os.WriteFile(cfg, []byte("store: {backend: memory, path: "+filepath.Join(dir, "store")+"}\ncustomers:\n  - id: acme\n    networks: [192.0.2.1]\n    domains: [acme.example]\n"), 0o600)
	csv := filepath.Join(dir, "in.csv")
	os.WriteFile(csv, []byte("address,note\na@x.example,ok\nbroken\nb@x.example,ok\n"), 0o600)
	key, _, err := secrets.Load("", filepath.Join(dir, "store"))
	if err != nil {
		t.Fatal(err)
	}
	arf := filepath.Join(dir, "arf.eml")
	os.WriteFile(arf, []byte("From: fbl@isp.example\r\nMIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=feedback-report; boundary=B\r\n\r\n--B\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\nUser-Agent: t\r\nVersion: 1\r\nOriginal-Rcpt-To: <c@x.example>\r\n\r\n--B\r\nContent-Type: text/rfc822-headers\r\n\r\n"+optout.StampHeader+": "+optout.Stamp(key, "acme", "M1", "c@x.example", time.Now())+"\r\nFrom: n@acme.example\r\n\r\n--B--\r\n"), 0o600)
	tests := []struct {
		name   string
		args   []string
		status int
		out    string
		errOut string
	}{
		{"add", []string{"optout", "add", "-config", cfg, "-list", "acme", "-note", "phone", "Jane@Example.com"}, 0, "added", ""},
		{"add again", []string{"optout", "add", "-config", cfg, "-list", "acme", "jane@example.com"}, 0, "already listed", ""},
		{"add bad", []string{"optout", "add", "-config", cfg, "-list", "acme", "nope"}, 1, "", "bad address"},
		{"check listed", []string{"optout", "check", "-config", cfg, "-list", "acme", "JANE@example.com"}, 0, "suppressed by list acme", ""},
		{"check absent", []string{"optout", "check", "-config", cfg, "-list", "acme", "x@example.com"}, 1, "not suppressed", ""},
		{"no list", []string{"optout", "check", "-config", cfg, "x@example.com"}, 2, "", "-list is required"},
		{"import with a bad line", []string{"optout", "import", "-config", cfg, "-list", "*", csv}, 1, "3 lines: 2 added, 0 already listed, 1 bad", "in.csv:3: "},
		{"global applies", []string{"optout", "check", "-config", cfg, "-list", "acme", "a@x.example"}, 0, "suppressed by list *", ""},
		{"export", []string{"optout", "export", "-config", cfg, "-list", "*"}, 0, "list,address,hash,source,time,note\n*,,", ""},
		{"remove", []string{"optout", "remove", "-config", cfg, "-list", "acme", "jane@example.com"}, 0, "removed", ""},
		{"list empty", []string{"optout", "list", "-config", cfg, "-list", "acme"}, 0, "", ""},
		{"complaint", []string{"complaint", "import", "-config", cfg, arf}, 0, "customer acme (by stamp), abuse, 1 recipient(s)", ""},
		{"complainant suppressed", []string{"optout", "check", "-config", cfg, "-list", "acme", "c@x.example"}, 0, "source complaint", ""},
		{"status", []string{"customer", "status", "-config", cfg, "acme"}, 0, "complaints:       1 of 0 delivered", ""},
		{"clear", []string{"customer", "clear", "-config", cfg, "acme"}, 0, "was not flagged", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			st := runMain(tt.args, &out, &errOut)
			if st != tt.status || !strings.Contains(out.String(), tt.out) || !strings.Contains(errOut.String(), tt.errOut) {
				t.Fatalf("%v: status %d\nstdout: %s\nstderr: %s\nwant %d, %q, %q", tt.args, st, out.String(), errOut.String(), tt.status, tt.out, tt.errOut)
			}
		})
	}
}
