package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"time"

	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/customer"
)

func init() {
	register("postfix-senders", "print Postfix's local_login_sender_maps table binding each customer's Unix logins to its senders", runPostfixSenders)
}

func runPostfixSenders(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("postfix-senders", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "/etc/aupguard/aupguard.yaml", "config file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, ok := loadConfig(*path, stderr)
	if !ok {
		return 1
	}
	io.WriteString(stdout, customer.PostfixSenderMap(cfg))
	return 0
}

// postconfFunc returns the values of Postfix parameters (postconf -h).
type postconfFunc func(params ...string) (map[string]string, error)

// runPostconf asks "postconf -x -c dir" for parameters' values, expanded.
func runPostconf(dir string) postconfFunc {
	return func(params ...string) (map[string]string, error) {
		if _, err := os.Stat(filepath.Join(dir, "main.cf")); err != nil {
			return nil, err
		}
		bin, err := exec.LookPath("postconf")
		if err != nil {
			if _, serr := os.Stat("/usr/sbin/postconf"); serr != nil {
				return nil, err
			}
			bin = "/usr/sbin/postconf"
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, bin, append([]string{"-x", "-c", dir}, params...)...).Output()
		if err != nil {
			return nil, fmt.Errorf("postconf -c %s: %v", dir, err)
		}
		m := map[string]string{}
		for l := range strings.Lines(string(out)) {
			if k, v, ok := strings.Cut(l, "="); ok {
				m[strings.TrimSpace(k)] = strings.TrimSpace(v)
			}
		}
		return m, nil
	}
}

// localSubmissionReport compares the local_submission settings with the
// Postfix configuration (when postconf can read it) and with the Unix
// users of this host. Problems that let local mail be attributed to the
// wrong customer are errors; the rest are hints.
func localSubmissionReport(cfg *config.Config, postconf postconfFunc, lookupUser func(string) error) (hints, errs []string) {
	ls := cfg.LocalSubmission
	var locals int
	for i, cu := range cfg.Customers {
		for j, u := range cu.LocalUsers {
			locals++
			if strings.HasPrefix(u, "uid:") || lookupUser == nil {
				continue
			}
			if err := lookupUser(u); err != nil {
				hints = append(hints, fmt.Sprintf("customers[%d].local_users[%d]: no Unix user %q on this host (fine if Postfix runs elsewhere)", i, j, u))
			}
		}
	}
	if locals > 0 && ls.SenderBinding != config.SenderBindingPostfix {
		hints = append(hints, "customers list local_users but local_submission.sender_binding is none: no local mail is attributed to them; bind senders in Postfix (aupguard postfix-senders) and set sender_binding: postfix")
	}
	var pf map[string]string
	var err error
	if postconf != nil {
		pf, err = postconf("non_smtpd_milters", "local_login_sender_maps", "myorigin")
	}
	if postconf == nil || err != nil {
		if ls.SenderBinding == config.SenderBindingPostfix {
			hints = append(hints, fmt.Sprintf("local_submission.sender_binding is postfix, but Postfix's local_login_sender_maps could not be checked (%v): it must bind each login to its senders (aupguard postfix-senders), or any local user can send as any customer", orNone(err)))
		}
		return hints, errs
	}
	if pf["non_smtpd_milters"] == "" {
		hints = append(hints, "Postfix's non_smtpd_milters is empty: mail submitted on the MTA host (sendmail, PHP mail(), cron) is not checked by aupguard at all")
		return hints, errs
	}
	static := pf["local_login_sender_maps"] == "" || pf["local_login_sender_maps"] == "static:*"
	switch {
	case ls.SenderBinding == config.SenderBindingPostfix && static:
		errs = append(errs, "local_submission.sender_binding is postfix, but Postfix's local_login_sender_maps is static:* (every local user may use any envelope sender): local mail could be attributed to any customer; set it from \"aupguard postfix-senders\"")
	case ls.SenderBinding != config.SenderBindingPostfix:
		hints = append(hints, fmt.Sprintf("Postfix hands locally submitted mail to aupguard (non_smtpd_milters), and local_submission.sender_binding is none: all of it gets local_submission.unattributed (%s)", ls.Unattributed))
	}
	if o := strings.ToLower(pf["myorigin"]); o != "" && ls.SenderBinding == config.SenderBindingPostfix && !containsFold(ls.LoginDomains, o) {
		hints = append(hints, fmt.Sprintf("Postfix's myorigin %q is not in local_submission.login_domains %v: mail sent without -f is not attributed by login", o, ls.LoginDomains))
	}
	return hints, errs
}

func orNone(err error) string {
	if err == nil {
		return "no Postfix configuration"
	}
	return err.Error()
}

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

func lookupUnixUser(name string) error {
	_, err := user.Lookup(name)
	return err
}
