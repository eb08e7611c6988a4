package testenv

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Default {daemon_name} macro values of the two Postfix listeners; see
// [PostfixOptions].
const (
	DefaultSMTPDaemonName       = "smtp"
	DefaultSubmissionDaemonName = "submission"
)

// postfixCmdTimeout bounds every Postfix administration command.
const postfixCmdTimeout = 60 * time.Second

// PostfixOptions configures [StartPostfix].
type PostfixOptions struct {
	// MilterAddr is the milter to call from both listeners and for locally
	// submitted mail, in Postfix syntax, e.g. "inet:127.0.0.1:12345". Empty
	// means no milter.
	MilterAddr string
	// MilterDefaultAction is milter_default_action, what Postfix does when
	// the milter is unreachable or misbehaves: "tempfail" (the default),
	// "accept", "reject" or "quarantine".
	MilterDefaultAction string
	// RelayTo is the "host:port" all mail is relayed to, normally a
	// [Sink]'s Addr. When empty, accepted mail is deferred and stays in the
	// queue (defer_transports; nothing is delivered or bounced, and a Flush
	// only tries a closed port on 127.0.0.1).
	RelayTo string
	// SASLUsers maps login to password for AUTH on the submission listener.
	// A login may be "user@realm" or a plain "user".
	SASLUsers map[string]string
	// SubmissionAllowUnauthenticated lets clients relay through the
	// submission listener without AUTH. By default, as on a real submission
	// port, a recipient from an unauthenticated client is refused by Postfix
	// (554 5.7.1 Relay access denied) before the milter sees it.
	SubmissionAllowUnauthenticated bool
	// SMTPDaemonName and SubmissionDaemonName are the {daemon_name} macro
	// values the milter receives for mail from the plain and the submission
	// listener; defaults DefaultSMTPDaemonName and DefaultSubmissionDaemonName.
	// They also name the listeners' syslog_name ("postfix/NAME") and
	// cleanup services ("cleanup-NAME"), so they must be distinct and made
	// of letters, digits, '-' and '_'. (Mail submitted with Sendmail gets
	// {daemon_name} = myhostname, Postfix's default.)
	SMTPDaemonName       string
	SubmissionDaemonName string
	// Hostname is myhostname; default "mta1.provider.test".
	Hostname string
	// ExtraMainCF adds or overrides main.cf parameters (applied last).
	ExtraMainCF map[string]string
}

// Postfix is a private Postfix instance: configuration, queue, data
// directory and log all live in one temporary directory, and its two SMTP
// listeners are on free ports of 127.0.0.1. It needs root.
type Postfix struct {
	t          testing.TB
	dir        string
	confDir    string
	queueDir   string
	logPath    string
	smtpAddr   string
	submitAddr string
	opts       PostfixOptions
	trust      sendmailTrust
}

// StartPostfix configures and starts a private Postfix instance and
// registers its shutdown (and the removal of its directory) with t.Cleanup.
// If the test failed, the tail of the Postfix log is written to the test log
// at cleanup.
//
// The plain listener ([Postfix.SMTPAddr]) treats 127.0.0.0/8 as mynetworks
// and lets everybody relay, so that the milter under test alone decides.
// The submission listener ([Postfix.SubmissionAddr]) offers AUTH PLAIN and
// LOGIN without TLS against a sasldb holding opts.SASLUsers. Local delivery
// is disabled and DNS is never used: all mail goes to opts.RelayTo.
func StartPostfix(t testing.TB, opts PostfixOptions) *Postfix {
	t.Helper()
	bins := []string{"postfix", "postconf", "postqueue", "sendmail"}
	if len(opts.SASLUsers) > 0 {
		bins = append(bins, "saslpasswd2")
	}
	Need(t, bins...)
	needRoot(t, "a private Postfix instance")
	if _, err := user.Lookup("postfix"); err != nil {
		unavailable(t, fmt.Sprintf("testenv: no postfix user (%v); run %s", err, InstallScript))
	}
	if plugins, _ := filepath.Glob("/usr/lib/*/sasl2/libplain.so*"); len(plugins) == 0 {
		if plugins, _ = filepath.Glob("/usr/lib/sasl2/libplain.so*"); len(plugins) == 0 {
			unavailable(t, fmt.Sprintf("testenv: Cyrus SASL PLAIN plugin not found (package libsasl2-modules); run %s", InstallScript))
		}
	}
	if opts.Hostname == "" {
		opts.Hostname = "mta1.provider.test"
	}
	if opts.MilterDefaultAction == "" {
		opts.MilterDefaultAction = "tempfail"
	}
	if opts.SMTPDaemonName == "" {
		opts.SMTPDaemonName = DefaultSMTPDaemonName
	}
	if opts.SubmissionDaemonName == "" {
		opts.SubmissionDaemonName = DefaultSubmissionDaemonName
	}
	for _, n := range []string{opts.SMTPDaemonName, opts.SubmissionDaemonName} {
		if !validServiceName(n) {
			t.Fatalf("testenv: daemon name %q: use only letters, digits, '-' and '_'", n)
		}
	}
	if opts.SMTPDaemonName == opts.SubmissionDaemonName {
		t.Fatalf("testenv: SMTPDaemonName and SubmissionDaemonName are both %q", opts.SMTPDaemonName)
	}

	// Not t.TempDir: its parent is 0700, and the postfix user must be able
	// to reach the queue. A short path also keeps the UNIX socket names
	// under the kernel's 108-byte limit.
	dir, err := os.MkdirTemp("", "aupg-pf-")
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	p := &Postfix{
		t:        t,
		dir:      dir,
		confDir:  filepath.Join(dir, "etc"),
		queueDir: filepath.Join(dir, "queue"),
		logPath:  filepath.Join(dir, "maillog"),
		opts:     opts,
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("testenv: postfix log (%s):\n%s", p.logPath, readTail(p.logPath, 80))
		}
		if err := p.stop(); err != nil {
			t.Errorf("%v", err)
			return // keep the directory for inspection
		}
		if err := os.RemoveAll(dir); err != nil {
			t.Logf("testenv: removing %s: %v", dir, err)
		}
	})
	if err := p.setup(); err != nil {
		t.Fatalf("testenv: postfix set-up in %s: %v", dir, err)
	}
	if err := p.start(); err != nil {
		t.Fatal(err)
	}
	return p
}

// QueueDir returns the instance's queue_directory: where Postfix resolves
// a relative unix: milter path (its daemons run in it, chrooted or not).
func (p *Postfix) QueueDir() string { return p.queueDir }

// SMTPAddr returns the "127.0.0.1:port" address of the plain SMTP listener.
func (p *Postfix) SMTPAddr() string { return p.smtpAddr }

// SubmissionAddr returns the "127.0.0.1:port" address of the submission
// listener, which offers SASL AUTH.
func (p *Postfix) SubmissionAddr() string { return p.submitAddr }

// ConfigDir returns the instance's configuration directory, for
// "postfix -c", "postconf -c", "postqueue -c" and "sendmail -C".
func (p *Postfix) ConfigDir() string { return p.confDir }

// LogPath is the Postfix log file (maillog_file, written by postlogd, mode
// 0644), as a gateway's reputation.deliveries.source would name it.
func (p *Postfix) LogPath() string { return p.logPath }

// Log returns the whole Postfix log so far (maillog_file).
func (p *Postfix) Log() string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", p.logPath, err)
	}
	return string(b)
}

// WaitLog waits until the Postfix log contains substr and returns the first
// line containing it. Log lines are written asynchronously, shortly after
// the event they describe.
func (p *Postfix) WaitLog(substr string, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		log := p.Log()
		if i := strings.Index(log, substr); i >= 0 {
			start := strings.LastIndexByte(log[:i], '\n') + 1
			end := strings.IndexByte(log[i:], '\n')
			if end < 0 {
				return log[start:], nil
			}
			return log[start : i+end], nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("testenv: %q not in the postfix log within %v; log tail:\n%s", substr, timeout, tail(log, 40))
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// Reload makes Postfix re-read main.cf and master.cf ("postfix reload") and
// waits until the master daemon has logged the reload.
func (p *Postfix) Reload() {
	p.t.Helper()
	before := strings.Count(p.Log(), "reload -- version")
	if out, err := p.run("postfix", "-c", p.confDir, "reload"); err != nil {
		p.t.Fatalf("testenv: postfix reload: %v\n%s", err, out)
	}
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(p.Log(), "reload -- version") <= before {
		if time.Now().After(deadline) {
			p.t.Fatalf("testenv: postfix did not log its reload; log tail:\n%s", readTail(p.logPath, 40))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Flush asks Postfix to attempt delivery of all queued mail now
// ("postqueue -f").
func (p *Postfix) Flush() {
	p.t.Helper()
	if out, err := p.run("postqueue", "-c", p.confDir, "-f"); err != nil {
		p.t.Fatalf("testenv: postqueue -f: %v\n%s", err, out)
	}
}

// QueuedMessage is one message in the Postfix queue, as reported by
// "postqueue -j".
type QueuedMessage struct {
	QueueName   string `json:"queue_name"`
	QueueID     string `json:"queue_id"`
	ArrivalTime int64  `json:"arrival_time"`
	MessageSize int64  `json:"message_size"`
	Sender      string `json:"sender"`
	Recipients  []struct {
		Address     string `json:"address"`
		DelayReason string `json:"delay_reason"`
	} `json:"recipients"`
}

// Queue lists the messages in the queue ("postqueue -j").
func (p *Postfix) Queue() []QueuedMessage {
	p.t.Helper()
	out, err := p.run("postqueue", "-c", p.confDir, "-j")
	if err != nil {
		p.t.Fatalf("testenv: postqueue -j: %v\n%s", err, out)
	}
	var msgs []QueuedMessage
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var m QueuedMessage
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			p.t.Fatalf("testenv: postqueue -j: %v in %q", err, sc.Text())
		}
		msgs = append(msgs, m)
	}
	return msgs
}

// QueueIDs returns the queue IDs of all queued messages.
func (p *Postfix) QueueIDs() []string {
	p.t.Helper()
	var ids []string
	for _, m := range p.Queue() {
		ids = append(ids, m.QueueID)
	}
	return ids
}

// queueSubdirs hold queue files of messages not yet delivered.
var queueSubdirs = []string{"maildrop", "incoming", "active", "deferred", "hold"}

// QueueLen counts the queue files of undelivered messages directly in the
// queue directories (cheaper than [Postfix.Queue], for polling).
func (p *Postfix) QueueLen() (int, error) {
	n := 0
	for _, sub := range queueSubdirs {
		err := filepath.WalkDir(filepath.Join(p.queueDir, sub), func(_ string, d os.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, os.ErrNotExist) {
					return nil // removed while walking
				}
				return err
			}
			if !d.IsDir() {
				n++
			}
			return nil
		})
		if err != nil {
			return 0, err
		}
	}
	return n, nil
}

// WaitQueueEmpty waits until no undelivered message is left in the queue.
// On timeout the error lists the queue and the log tail.
func (p *Postfix) WaitQueueEmpty(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		n, err := p.QueueLen()
		if err != nil {
			return fmt.Errorf("testenv: reading postfix queue: %w", err)
		}
		if n == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			out, _ := p.run("postqueue", "-c", p.confDir, "-p")
			return fmt.Errorf("testenv: postfix queue not empty after %v (%d message(s)):\n%s\nlog tail:\n%s", timeout, n, out, readTail(p.logPath, 40))
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// Sendmail submits a message through Postfix's sendmail command (pickup
// path), which goes through non_smtpd_milters rather than smtpd_milters.
func (p *Postfix) Sendmail(from string, to []string, data []byte) error {
	args := append([]string{"-C", p.confDir, "-i", "-f", from, "--"}, to...)
	ctx, cancel := context.WithTimeout(context.Background(), postfixCmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, mustBin(p.t, "sendmail"), args...)
	cmd.Stdin = bytes.NewReader(data)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("testenv: sendmail %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

// run runs a Postfix administration program with a time limit.
func (p *Postfix) run(name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), postfixCmdTimeout)
	defer cancel()
	return exec.CommandContext(ctx, mustBin(p.t, name), args...).CombinedOutput()
}

// setup writes the configuration and creates the directories.
func (p *Postfix) setup() error {
	if err := os.Chmod(p.dir, 0o755); err != nil {
		return err
	}
	for _, d := range []string{p.confDir, p.queueDir, filepath.Join(p.confDir, "sasl")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return err
		}
	}
	ports, err := freePorts(2)
	if err != nil {
		return err
	}
	p.smtpAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
	p.submitAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[1]))

	if err := os.WriteFile(filepath.Join(p.confDir, "main.cf"), []byte(p.mainCF()), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(p.confDir, "master.cf"), []byte(p.masterCF()), 0o644); err != nil {
		return err
	}
	if err := p.setupSASL(); err != nil {
		return err
	}
	// Postfix re-reads a configuration file modified within the last two
	// seconds every 300 ms until it "cools down", which would add about
	// two seconds to every program started now. Backdate the files.
	old := time.Now().Add(-time.Hour)
	for _, f := range []string{"main.cf", "master.cf"} {
		if err := os.Chtimes(filepath.Join(p.confDir, f), old, old); err != nil {
			return err
		}
	}
	// Let postconf check the configuration: unknown or misspelt parameters
	// (e.g. in ExtraMainCF) are only warned about, so surface the warnings.
	out, err := p.run("postconf", "-c", p.confDir, "-n")
	if err != nil {
		return fmt.Errorf("postconf -n: %v\n%s", err, out)
	}
	for l := range strings.Lines(string(out)) {
		if strings.Contains(l, "warning:") {
			p.t.Logf("testenv: postconf: %s", strings.TrimSpace(l))
		}
	}
	return nil
}

// mainCF renders main.cf.
func (p *Postfix) mainCF() string {
	o := p.opts
	type kv struct{ k, v string }
	cf := []kv{
		{"compatibility_level", "3.6"},
		{"queue_directory", p.queueDir},
		{"data_directory", filepath.Join(p.dir, "data")},
		{"mail_owner", "postfix"},
		{"maillog_file", p.logPath},
		{"maillog_file_prefixes", p.dir},

		// Identity and routing: nothing is local, everything is relayed.
		{"myhostname", o.Hostname},
		{"myorigin", "$myhostname"},
		{"mydestination", ""},
		{"local_recipient_maps", ""},
		{"alias_maps", ""},
		{"alias_database", ""},
		{"local_transport", "error:local delivery disabled"},
		{"inet_interfaces", "127.0.0.1"},
		{"inet_protocols", "ipv4"},
		{"mynetworks", "127.0.0.0/8"},
		{"biff", "no"},

		// No DNS, no TLS: the test machine may have no network at all.
		{"smtp_dns_support_level", "disabled"},
		{"smtp_host_lookup", "native"},
		{"smtpd_peername_lookup", "no"},
		{"smtp_tls_security_level", "none"},
		{"smtpd_tls_security_level", "none"},

		// The milter decides who may send; Postfix lets every client relay.
		// (A bare "permit" is refused by smtpd's open-relay safety check, and
		// all clients are on loopback, i.e. in mynetworks.)
		{"smtpd_relay_restrictions", "permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination"},
		{"smtpd_recipient_restrictions", ""},
		{"smtpd_banner", "$myhostname ESMTP"},

		// SASL (enabled on the submission listener only).
		{"smtpd_sasl_auth_enable", "no"},
		{"smtpd_sasl_type", "cyrus"},
		{"smtpd_sasl_path", "smtpd"},
		{"cyrus_sasl_config_path", filepath.Join(p.confDir, "sasl")},
		{"smtpd_sasl_security_options", "noanonymous"},
		{"smtpd_tls_auth_only", "no"},

		// No artificial delays or limits: a load test pushes thousands of
		// messages through.
		{"default_process_limit", "100"},
		{"in_flow_delay", "0"},
		{"smtpd_error_sleep_time", "0"},
		{"smtpd_soft_error_limit", "1000"},
		{"smtpd_hard_error_limit", "1000"},
		{"smtpd_junk_command_limit", "1000"},
		{"smtpd_client_connection_count_limit", "0"},
		{"smtpd_client_connection_rate_limit", "0"},
		{"default_destination_concurrency_limit", "50"},
		{"queue_run_delay", "1s"},
		{"minimal_backoff_time", "1s"},
		{"maximal_backoff_time", "10s"},
		{"smtp_connect_timeout", "5s"},
	}
	if o.RelayTo != "" {
		host, port, err := net.SplitHostPort(o.RelayTo)
		if err != nil {
			host, port = o.RelayTo, "25"
		}
		cf = append(cf, kv{"relayhost", fmt.Sprintf("[%s]:%s", host, port)})
	} else {
		// Keep accepted mail in the queue. (An error/retry default_transport
		// would make smtpd refuse the recipients.) Should the queue be
		// flushed, delivery goes to a dead loopback port, never to DNS.
		cf = append(cf, kv{"relayhost", "[127.0.0.1]:1"}, kv{"defer_transports", "smtp, relay"})
	}
	if o.MilterAddr != "" {
		cf = append(cf,
			kv{"smtpd_milters", o.MilterAddr},
			kv{"non_smtpd_milters", o.MilterAddr},
			kv{"milter_protocol", "6"},
			kv{"milter_default_action", o.MilterDefaultAction},
			// Postfix's defaults plus client and listener identity at every
			// stage, so a milter need not remember earlier stages' macros.
			kv{"milter_connect_macros", "j {daemon_name} {daemon_addr} v _ {client_addr} {client_port} {client_name} {client_ptr}"},
			kv{"milter_helo_macros", "{tls_version} {cipher} {cipher_bits} {cert_subject} {cert_issuer}"},
			kv{"milter_mail_macros", "i {auth_type} {auth_authen} {auth_author} {mail_addr} {mail_host} {mail_mailer} {client_addr} {daemon_name}"},
			kv{"milter_rcpt_macros", "i {rcpt_addr} {rcpt_host} {rcpt_mailer}"},
			kv{"milter_data_macros", "i"},
			kv{"milter_end_of_header_macros", "i"},
			kv{"milter_end_of_data_macros", "i {auth_authen} {mail_addr} {client_addr} {daemon_name}"},
		)
	}
	for _, k := range slices.Sorted(maps.Keys(o.ExtraMainCF)) {
		cf = append(cf, kv{k, o.ExtraMainCF[k]})
	}
	// Later entries override earlier ones; write each parameter once.
	last := map[string]int{}
	for i, e := range cf {
		last[e.k] = i
	}
	var b strings.Builder
	b.WriteString("# Generated by aupguard internal/testenv.\n")
	for i, e := range cf {
		if last[e.k] == i {
			fmt.Fprintf(&b, "%s = %s\n", e.k, e.v)
		}
	}
	return b.String()
}

// masterCF renders master.cf: the two listeners plus the internal services
// Postfix needs, none of them chrooted.
func (p *Postfix) masterCF() string {
	o := p.opts
	submissionRelay := "permit_sasl_authenticated,reject"
	if o.SubmissionAllowUnauthenticated {
		submissionRelay = "permit"
	}
	return fmt.Sprintf(`# Generated by aupguard internal/testenv.
# service type  private unpriv  chroot  wakeup  maxproc command + args
# Each listener has its own cleanup service: cleanup, not smtpd, talks to
# the milter from the message headers on, so it must know the daemon name.
%[1]s inet n - n - - smtpd
  -o syslog_name=postfix/%[2]s
  -o milter_macro_daemon_name=%[2]s
  -o cleanup_service_name=cleanup-%[2]s
%[3]s inet n - n - - smtpd
  -o syslog_name=postfix/%[4]s
  -o milter_macro_daemon_name=%[4]s
  -o cleanup_service_name=cleanup-%[4]s
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_tls_security_level=none
  -o smtpd_tls_auth_only=no
  -o smtpd_relay_restrictions=%[5]s
cleanup-%[2]s unix n - n - 0 cleanup
  -o syslog_name=postfix/%[2]s
  -o milter_macro_daemon_name=%[2]s
cleanup-%[4]s unix n - n - 0 cleanup
  -o syslog_name=postfix/%[4]s
  -o milter_macro_daemon_name=%[4]s
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
`,
		p.smtpAddr, o.SMTPDaemonName, p.submitAddr, o.SubmissionDaemonName, submissionRelay)
}

// setupSASL writes the Cyrus SASL configuration for smtpd and creates the
// users in a sasldb readable by the postfix user.
func (p *Postfix) setupSASL() error {
	saslDir := filepath.Join(p.confDir, "sasl")
	db := filepath.Join(saslDir, "sasldb2")
	conf := fmt.Sprintf("pwcheck_method: auxprop\nauxprop_plugin: sasldb\nmech_list: PLAIN LOGIN\nsasldb_path: %s\n", db)
	if err := os.WriteFile(filepath.Join(saslDir, "smtpd.conf"), []byte(conf), 0o644); err != nil {
		return err
	}
	if len(p.opts.SASLUsers) == 0 {
		return nil
	}
	for _, login := range slices.Sorted(maps.Keys(p.opts.SASLUsers)) {
		userPart, realm := login, p.opts.Hostname
		if i := strings.LastIndexByte(login, '@'); i >= 0 {
			userPart, realm = login[:i], login[i+1:]
		}
		args := []string{"-f", db, "-p", "-c", "-u", realm, userPart}
		ctx, cancel := context.WithTimeout(context.Background(), postfixCmdTimeout)
		cmd := exec.CommandContext(ctx, mustBin(p.t, "saslpasswd2"), args...)
		cmd.Stdin = strings.NewReader(p.opts.SASLUsers[login])
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			return fmt.Errorf("saslpasswd2 %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	g, err := user.LookupGroup("postfix")
	if err != nil {
		return err
	}
	gid, _ := strconv.Atoi(g.Gid)
	if err := os.Chown(db, 0, gid); err != nil {
		return err
	}
	return os.Chmod(db, 0o640)
}

// start runs "postfix start", which returns once the master daemon has
// bound the listeners.
func (p *Postfix) start() error {
	out, err := p.run("postfix", "-c", p.confDir, "start")
	if err != nil {
		return fmt.Errorf("testenv: postfix -c %s start: %v\n%s\nlog tail:\n%s", p.confDir, err, out, readTail(p.logPath, 40))
	}
	// The master daemon accepts connections by itself; only a greeting
	// shows that smtpd can run with this configuration.
	for _, addr := range []string{p.smtpAddr, p.submitAddr} {
		if err := checkGreeting(addr); err != nil {
			return fmt.Errorf("testenv: postfix started but the listener %s is not working: %v\nlog tail:\n%s", addr, err, readTail(p.logPath, 40))
		}
	}
	return nil
}

// checkGreeting connects to addr, expects a 220 banner and says QUIT.
func checkGreeting(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return fmt.Errorf("no greeting: %w", err)
	}
	if !strings.HasPrefix(line, "220") {
		return fmt.Errorf("greeting %q", strings.TrimSpace(line))
	}
	c.Write([]byte("QUIT\r\n"))
	return nil
}

// validServiceName reports whether s can be used in a master.cf service
// name and a syslog name.
func validServiceName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// masterPID returns the PID of the running master daemon, or 0.
func (p *Postfix) masterPID() int {
	b, err := os.ReadFile(filepath.Join(p.queueDir, "pid", "master.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if pid <= 0 || !alive(pid) {
		return 0
	}
	return pid
}

// stop terminates the master daemon and all its children. It does what
// "postfix stop" does, without that script's one-second polling: SIGTERM to
// the master (which passes it on to its process group), then SIGKILL to the
// group if anything is left after 10 s.
func (p *Postfix) stop() error {
	pid := p.masterPID()
	if pid == 0 {
		return nil
	}
	syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(10 * time.Second)
	for groupAlive(pid) {
		if time.Now().After(deadline) {
			syscall.Kill(-pid, syscall.SIGKILL)
			if !waitGroupGone(pid, 5*time.Second) {
				return fmt.Errorf("testenv: postfix (master pid %d) in %s did not stop", pid, p.dir)
			}
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

func waitGroupGone(pgid int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for groupAlive(pgid) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	st, err := procStat(pid)
	return err == nil && st.state != 'Z'
}

// groupAlive reports whether any live (non-zombie) process is in process
// group pgid.
func groupAlive(pgid int) bool {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return alive(pgid)
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := procStat(pid)
		if err == nil && st.pgrp == pgid && st.state != 'Z' {
			return true
		}
	}
	return false
}

type procStatus struct {
	state byte
	pgrp  int
}

// procStat reads state and process group from /proc/PID/stat.
func procStat(pid int) (procStatus, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStatus{}, err
	}
	// The command name is in parentheses and may contain spaces.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStatus{}, errors.New("malformed stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 3 {
		return procStatus{}, errors.New("malformed stat")
	}
	pgrp, err := strconv.Atoi(f[2])
	if err != nil {
		return procStatus{}, err
	}
	return procStatus{state: f[0][0], pgrp: pgrp}, nil
}
