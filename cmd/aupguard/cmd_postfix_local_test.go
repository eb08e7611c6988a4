package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/testkit/testenv"
)

func TestLocalSubmissionReport(t *testing.T) {
	const base = `
provider: {hostnames: [mta1.provider.test]}
local_submission: {sender_binding: BINDING}
customers:
  - id: acme
    local_users: [web1, nosuchuser]
    domains: [acme.example]
`
	pc := func(vals map[string]string) postconfFunc {
		return func(...string) (map[string]string, error) { return vals, nil }
	}
	noPostfix := func(...string) (map[string]string, error) { return nil, errors.New("no main.cf") }
	users := func(u string) error {
		if u == "web1" {
			return nil
		}
		return errors.New("unknown user")
	}
	tests := []struct {
		name      string
		binding   string
		postconf  postconfFunc
		wantHints []string
		wantErrs  []string
	}{
		{"bound, Postfix binds", "postfix", pc(map[string]string{"non_smtpd_milters": "inet:127.0.0.1:8891", "local_login_sender_maps": "texthash:/etc/postfix/aupguard-senders", "myorigin": "mta1.provider.test"}),
			[]string{`no Unix user "nosuchuser"`}, nil},
		{"bound, Postfix does not bind", "postfix", pc(map[string]string{"non_smtpd_milters": "inet:127.0.0.1:8891", "local_login_sender_maps": "static:*", "myorigin": "mta1.provider.test"}),
			[]string{`no Unix user "nosuchuser"`}, []string{"local_login_sender_maps is static:*"}},
		{"bound, Postfix not readable", "postfix", noPostfix,
			[]string{`no Unix user "nosuchuser"`, "could not be checked (no main.cf)"}, nil},
		{"unbound", "none", pc(map[string]string{"non_smtpd_milters": "inet:127.0.0.1:8891", "local_login_sender_maps": "static:*"}),
			[]string{`no Unix user "nosuchuser"`, "sender_binding is none: no local mail is attributed", "all of it gets local_submission.unattributed (defer)"}, nil},
		{"no non_smtpd_milters", "none", pc(map[string]string{"non_smtpd_milters": ""}),
			[]string{`no Unix user "nosuchuser"`, "sender_binding is none", "non_smtpd_milters is empty"}, nil},
		{"myorigin not a login domain", "postfix", pc(map[string]string{"non_smtpd_milters": "x", "local_login_sender_maps": "hash:/x", "myorigin": "web.provider.test"}),
			[]string{`no Unix user "nosuchuser"`, `myorigin "web.provider.test" is not in local_submission.login_domains`}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := config.Parse([]byte(strings.Replace(base, "BINDING", tc.binding, 1)), "c.yaml", config.Options{})
			if err != nil {
				t.Fatal(err)
			}
			hints, errs := localSubmissionReport(cfg, tc.postconf, users)
			check := func(kind string, got, want []string) {
				if len(got) != len(want) {
					t.Errorf("%s = %q, want %d matching %q", kind, got, len(want), want)
					return
				}
				for i := range want {
					if !strings.Contains(got[i], want[i]) {
						t.Errorf("%s[%d] = %q, want it to contain %q", kind, i, got[i], want[i])
					}
				}
			}
			check("hints", hints, tc.wantHints)
			check("errors", errs, tc.wantErrs)
		})
	}
}

// TestPostfixSendersCommand runs "aupguard postfix-senders" on a config.
func TestPostfixSendersCommand(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	cfg := "provider: {hostnames: [mta1.provider.test]}\ncustomers:\n  - id: acme\n    local_users: [web1]\n    domains: [acme.example]\n"
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if rc := runMain([]string{"postfix-senders", "-config", path}, &out, &errOut); rc != 0 {
		t.Fatalf("rc %d: %s", rc, errOut.String())
	}
	if !strings.Contains(out.String(), "web1\tweb1, web1@mta1.provider.test, @acme.example\n") {
		t.Fatalf("output:\n%s", out.String())
	}
}

// TestRunPostconf reads parameters with the real postconf from a
// configuration directory, as check-config does.
func TestRunPostconf(t *testing.T) {
	testenv.Need(t, "postconf")
	dir := t.TempDir()
	cf := "non_smtpd_milters = inet:127.0.0.1:8891\nlocal_login_sender_maps = inline:{ { root = * } }, texthash:/etc/postfix/aupguard-senders\nmyhostname = mta1.provider.test\n"
	if err := os.WriteFile(filepath.Join(dir, "main.cf"), []byte(cf), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := runPostconf(dir)("non_smtpd_milters", "local_login_sender_maps", "myorigin")
	if err != nil {
		t.Fatal(err)
	}
	if got["non_smtpd_milters"] != "inet:127.0.0.1:8891" || got["local_login_sender_maps"] != "inline:{ { root = * } }, texthash:/etc/postfix/aupguard-senders" || got["myorigin"] != "mta1.provider.test" {
		t.Fatalf("postconf: %q", got)
	}
	if _, err := runPostconf(t.TempDir())("myorigin"); err == nil {
		t.Fatal("no error for a directory without main.cf")
	}
}
