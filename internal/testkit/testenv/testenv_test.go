package testenv

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	milter "github.com/d--j/go-milter"
	"github.com/redis/go-redis/v9"
)

func TestParseReplies(t *testing.T) {
	tests := []struct {
		name string
		raw  string
		want []Reply
	}{
		{"simple", "250 2.1.0 Ok\r\n", []Reply{{250, "2.1.0", "Ok"}}},
		{"no enhanced code", "220 mta ESMTP\r\n", []Reply{{220, "", "mta ESMTP"}}},
		{"multi-line", "250-mta1\r\n250-PIPELINING\r\n250 8BITMIME\r\n", []Reply{{250, "", "mta1\nPIPELINING\n8BITMIME"}}},
		{"multi-line enhanced", "550-5.7.1 first\r\n550 5.7.1 second\r\n", []Reply{{550, "5.7.1", "first\nsecond"}}},
		{"class mismatch is text", "250 5.0.0 odd\r\n", []Reply{{250, "", "5.0.0 odd"}}},
		{"two replies", "220 hi\r\n250 ok\r\n", []Reply{{220, "", "hi"}, {250, "", "ok"}}},
		{"bare code", "354\r\n", []Reply{{354, "", ""}}},
		{"empty", "", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := parseReplies(tc.raw)
			if !slices.Equal(got, tc.want) {
				t.Errorf("parseReplies(%q) = %+v, want %+v", tc.raw, got, tc.want)
			}
		})
	}
}

func TestSinkAndSendMail(t *testing.T) {
	t.Parallel()
	sink := StartSink(t)
	res, err := SendMail(sink.Addr(), SendOptions{
		LocalAddr: "127.0.0.7",
		Helo:      "client.example",
		From:      "alice@example.test",
		To:        []string{"bob@example.test", "carol@example.test"},
		Data:      []byte("Subject: hi\n\nline 1\n.leading dot\n"),
	})
	if err != nil {
		t.Fatalf("SendMail: %v", err)
	}
	if !res.Delivered() || res.Mail.Code != 250 || len(res.AcceptedRcpts()) != 2 || res.Greeting.Code != 220 {
		t.Fatalf("unexpected transaction:\n%s", res)
	}
	msgs, err := sink.WaitFor(1, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	m := msgs[0]
	if m.From != "alice@example.test" || !slices.Equal(m.To, []string{"bob@example.test", "carol@example.test"}) {
		t.Errorf("envelope = %q -> %q", m.From, m.To)
	}
	if want := "Subject: hi\r\n\r\nline 1\r\n.leading dot\r\n"; string(m.Data) != want {
		t.Errorf("data = %q, want %q", m.Data, want)
	}
	if m.Helo != "client.example" || !strings.HasPrefix(m.RemoteAddr, "127.0.0.7:") {
		t.Errorf("helo %q from %q, want client.example from 127.0.0.7", m.Helo, m.RemoteAddr)
	}
	sink.Reset()
	if n := len(sink.Messages()); n != 0 {
		t.Errorf("after Reset: %d messages", n)
	}
	if _, err := sink.WaitFor(1, 50*time.Millisecond); err == nil {
		t.Error("WaitFor after Reset succeeded, want time-out")
	}
}

func TestSendMailConnectionError(t *testing.T) {
	t.Parallel()
	ports, err := freePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	res, err := SendMail(fmt.Sprintf("127.0.0.1:%d", ports[0]), SendOptions{From: "a@b.test", To: []string{"c@d.test"}, Timeout: 2 * time.Second})
	if err == nil {
		t.Fatalf("SendMail to a closed port: no error; result:\n%s", res)
	}
}

func TestRedisRestart(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		appendOnly bool
		halt       func(*Redis)
		wantKept   bool
	}{
		{"aof survives kill", true, (*Redis).Kill, true},
		{"aof survives stop", true, (*Redis).Stop, true},
		{"no persistence loses data on kill", false, (*Redis).Kill, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			r := StartRedis(t, RedisOptions{AppendOnly: tc.appendOnly})
			c := r.Client()
			if err := c.Set(ctx, "k", "v1", 0).Err(); err != nil {
				t.Fatalf("SET: %v", err)
			}
			if err := c.Incr(ctx, "n").Err(); err != nil {
				t.Fatalf("INCR: %v", err)
			}
			addr := r.Addr()
			tc.halt(r)
			if r.Running() {
				t.Fatal("server still running after halt")
			}
			if _, err := redisPing(addr); err == nil {
				t.Fatal("PING succeeded on a halted server")
			}
			r.Start()
			if r.Addr() != addr {
				t.Errorf("address changed across restart: %s -> %s", addr, r.Addr())
			}
			got, err := c.Get(ctx, "k").Result()
			switch {
			case tc.wantKept && (err != nil || got != "v1"):
				t.Errorf("after restart GET k = %q, %v; want v1", got, err)
			case !tc.wantKept && err != redis.Nil:
				t.Errorf("after restart GET k = %q, %v; want redis.Nil", got, err)
			}
			if tc.wantKept {
				if n, err := c.Get(ctx, "n").Int(); err != nil || n != 1 {
					t.Errorf("after restart GET n = %d, %v; want 1", n, err)
				}
			}
		})
	}
}

func TestRedisCluster(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rc := StartRedisCluster(t)
	if n := len(rc.Addrs()); n != 3 {
		t.Fatalf("Addrs() has %d entries, want 3", n)
	}
	c := rc.Client()

	nodes, err := c.ClusterNodes(ctx).Result()
	if err != nil {
		t.Fatalf("CLUSTER NODES: %v", err)
	}
	masters := 0
	for l := range strings.Lines(nodes) {
		if f := strings.Fields(l); len(f) > 2 && strings.Contains(f[2], "master") {
			masters++
		}
	}
	if masters != 3 {
		t.Errorf("CLUSTER NODES lists %d masters, want 3:\n%s", masters, nodes)
	}

	tests := []struct {
		name          string
		keys          []string
		wantCrossSlot bool
	}{
		{"hash tag", []string{"{cust:42}:count", "{cust:42}:limit", "{cust:42}:seen"}, false},
		{"no hash tag", []string{"alpha", "beta", "gamma", "delta"}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var kv []any
			for i, k := range tc.keys {
				kv = append(kv, k, i)
			}
			err := c.MSet(ctx, kv...).Err()
			if tc.wantCrossSlot {
				if err == nil || !strings.Contains(err.Error(), "CROSSSLOT") {
					t.Fatalf("MSET across slots: err = %v, want CROSSSLOT", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("MSET: %v", err)
			}
			vals, err := c.MGet(ctx, tc.keys...).Result()
			if err != nil {
				t.Fatalf("MGET: %v", err)
			}
			for i, v := range vals {
				if v != fmt.Sprint(i) {
					t.Errorf("MGET[%d] = %v, want %d", i, v, i)
				}
			}
			// A MULTI/EXEC transaction on one slot goes to a single node.
			_, err = c.TxPipelined(ctx, func(p redis.Pipeliner) error {
				for _, k := range tc.keys {
					p.Incr(ctx, k)
				}
				return nil
			})
			if err != nil {
				t.Fatalf("MULTI/EXEC: %v", err)
			}
		})
	}
}

// TestPostfix exercises one Postfix instance without milter: relaying from
// the plain listener to the sink, SASL on the submission listener and the
// sendmail path.
func TestPostfix(t *testing.T) {
	t.Parallel()
	sink := StartSink(t)
	users := map[string]string{
		"bob":             "bob-secret",
		"carol@cust.test": "carol-secret",
	}
	pf := StartPostfix(t, PostfixOptions{RelayTo: sink.Addr(), SASLUsers: users})

	t.Run("relay from plain listener", func(t *testing.T) {
		sink.Reset()
		res, err := SendMail(pf.SMTPAddr(), SendOptions{
			LocalAddr: "127.0.0.5",
			Helo:      "customer.example",
			From:      "alice@customer.example",
			To:        []string{"rcpt1@remote.example", "rcpt2@other.example"},
			Data:      []byte("From: alice@customer.example\r\nSubject: relay test\r\n\r\nHello through Postfix.\r\n"),
		})
		if err != nil {
			t.Fatal(err)
		}
		if !res.Delivered() || len(res.AcceptedRcpts()) != 2 {
			t.Fatalf("not delivered:\n%s", res)
		}
		if !strings.Contains(res.EndOfData.Text, "queued as") {
			t.Errorf("end-of-data reply %q lacks the queue id", res.EndOfData)
		}
		msgs, err := sink.WaitFor(1, 20*time.Second)
		if err != nil {
			t.Fatalf("%v\npostfix log:\n%s", err, tail(pf.Log(), 30))
		}
		m := msgs[0]
		if m.From != "alice@customer.example" {
			t.Errorf("envelope from = %q", m.From)
		}
		if got := slices.Sorted(slices.Values(m.To)); !slices.Equal(got, []string{"rcpt1@remote.example", "rcpt2@other.example"}) {
			t.Errorf("envelope to = %q", m.To)
		}
		body := string(m.Data)
		for _, want := range []string{"Subject: relay test", "Hello through Postfix.", "[127.0.0.5]"} {
			if !strings.Contains(body, want) {
				t.Errorf("relayed message lacks %q:\n%s", want, body)
			}
		}
		if m.Helo != "mta1.provider.test" {
			t.Errorf("Postfix introduced itself as %q", m.Helo)
		}
		if err := pf.WaitQueueEmpty(10 * time.Second); err != nil {
			t.Error(err)
		}
	})

	t.Run("submission", func(t *testing.T) {
		tests := []struct {
			name     string
			auth     *Credentials
			wantAuth int // 0: no AUTH sent
			wantRcpt int
			wantSent bool
		}{
			{"plain login", &Credentials{"bob", "bob-secret"}, 235, 250, true},
			{"realm login", &Credentials{"carol@cust.test", "carol-secret"}, 235, 250, true},
			{"wrong password", &Credentials{"bob", "wrong"}, 535, 0, false},
			{"unknown user", &Credentials{"mallory", "bob-secret"}, 535, 0, false},
			{"no auth", nil, 0, 554, false},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				sink.Reset()
				subject := "submission " + tc.name
				res, err := SendMail(pf.SubmissionAddr(), SendOptions{
					Auth: tc.auth,
					From: "sender@cust.test",
					To:   []string{"dest@remote.example"},
					Data: []byte("Subject: " + subject + "\r\n\r\nbody\r\n"),
				})
				if err != nil {
					t.Fatal(err)
				}
				t.Logf("transaction:\n%s", res)
				switch {
				case tc.wantAuth == 0 && res.Auth != nil:
					t.Errorf("AUTH reply %v, want none", res.Auth)
				case tc.wantAuth != 0 && (res.Auth == nil || res.Auth.Code != tc.wantAuth):
					t.Errorf("AUTH reply %v, want %d", res.Auth, tc.wantAuth)
				}
				if tc.wantRcpt == 0 {
					if res.Mail != nil {
						t.Errorf("MAIL sent after failed AUTH: %v", res.Mail)
					}
				} else if len(res.Rcpts) != 1 || res.Rcpts[0].Code != tc.wantRcpt {
					t.Errorf("RCPT replies %+v, want %d", res.Rcpts, tc.wantRcpt)
				}
				if res.Delivered() != tc.wantSent {
					t.Errorf("Delivered() = %v, want %v", res.Delivered(), tc.wantSent)
				}
				if !tc.wantSent {
					return
				}
				msgs, err := sink.WaitFor(1, 20*time.Second)
				if err != nil {
					t.Fatalf("%v\npostfix log:\n%s", err, tail(pf.Log(), 30))
				}
				if !strings.Contains(string(msgs[0].Data), "Subject: "+subject) {
					t.Errorf("relayed message:\n%s", msgs[0].Data)
				}
				line, err := pf.WaitLog("sasl_username="+tc.auth.Username, 5*time.Second)
				if err != nil {
					t.Error(err)
				} else if !strings.Contains(line, "postfix/submission/smtpd") {
					t.Errorf("submission logged with unexpected syslog name: %s", line)
				}
			})
		}
	})

	t.Run("sendmail", func(t *testing.T) {
		sink.Reset()
		if err := pf.Sendmail("local@provider.test", []string{"x@remote.example"}, []byte("Subject: via sendmail\n\nhi\n")); err != nil {
			t.Fatal(err)
		}
		msgs, err := sink.WaitFor(1, 20*time.Second)
		if err != nil {
			t.Fatalf("%v\npostfix log:\n%s", err, tail(pf.Log(), 30))
		}
		if msgs[0].From != "local@provider.test" || !slices.Equal(msgs[0].To, []string{"x@remote.example"}) {
			t.Errorf("envelope %q -> %q", msgs[0].From, msgs[0].To)
		}
		if err := pf.WaitQueueEmpty(10 * time.Second); err != nil {
			t.Error(err)
		}
		if ids := pf.QueueIDs(); len(ids) != 0 {
			t.Errorf("QueueIDs() = %q, want none", ids)
		}
	})

	t.Run("reload", func(t *testing.T) {
		pf.Reload()
		res, err := SendMail(pf.SMTPAddr(), SendOptions{From: "a@b.test", To: []string{"c@d.test"}, Data: []byte("Subject: after reload\r\n\r\nx\r\n")})
		if err != nil || !res.Delivered() {
			t.Fatalf("after reload: %v\n%s", err, res)
		}
	})
}

// TestPostfixDeferredWithoutRelay checks that without RelayTo mail stays in
// the queue, and the queue helpers see it.
func TestPostfixDeferredWithoutRelay(t *testing.T) {
	t.Parallel()
	pf := StartPostfix(t, PostfixOptions{})
	res, err := SendMail(pf.SMTPAddr(), SendOptions{From: "a@b.test", To: []string{"c@d.test"}, Data: []byte("Subject: stays\r\n\r\nx\r\n")})
	if err != nil || !res.Delivered() {
		t.Fatalf("SendMail: %v\n%s", err, res)
	}
	if _, err := pf.WaitLog("status=deferred", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	// The deferred message is retried every second or so; it is in the
	// deferred queue most of the time.
	var q []QueuedMessage
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if q = pf.Queue(); len(q) == 1 && q[0].QueueName == "deferred" {
			break
		}
	}
	if len(q) != 1 || q[0].Sender != "a@b.test" || q[0].QueueName != "deferred" || len(q[0].Recipients) != 1 || q[0].Recipients[0].DelayReason == "" {
		t.Fatalf("queue = %+v", q)
	}
	if !strings.Contains(res.EndOfData.Text, q[0].QueueID) {
		t.Errorf("queue id %s not in end-of-data reply %q", q[0].QueueID, res.EndOfData)
	}
	if err := pf.WaitQueueEmpty(100 * time.Millisecond); err == nil {
		t.Error("WaitQueueEmpty succeeded with a deferred message in the queue")
	}
}

// stageMacros are the macros the milter test records at each stage.
var stageMacros = []string{"j", "{daemon_name}", "{client_addr}", "{client_name}", "{auth_authen}", "i", "{mail_addr}", "{rcpt_addr}"}

// milterLog records, per envelope sender, the macros seen at each stage.
type milterLog struct {
	mu     sync.Mutex
	stages map[string]map[string]map[string]string // from -> stage -> macro -> value
}

func (l *milterLog) record(from, stage string, m milter.Macros) {
	vals := map[string]string{}
	for _, name := range stageMacros {
		if v, ok := m.GetEx(name); ok {
			vals[name] = v
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stages[from] == nil {
		l.stages[from] = map[string]map[string]string{}
	}
	l.stages[from][stage] = vals
}

func (l *milterLog) get(from, stage string) map[string]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.stages[from][stage]
}

// testMilter rejects according to the addresses: a recipient local part
// "reject", "tempfail" or "plainreject", a sender local part "reject", a
// body containing REJECT-AT-EOD. Everything else is accepted and gets an
// X-Testenv-Milter header.
type testMilter struct {
	milter.NoOpMilter
	log  *milterLog
	from string
	body strings.Builder
}

func (m *testMilter) MailFrom(from, _ string, mod milter.Modifier) (*milter.Response, error) {
	m.from = from
	m.body.Reset()
	m.log.record(from, "mail", mod)
	if strings.HasPrefix(from, "reject@") {
		return milter.RejectWithCodeAndReason(550, "5.7.1 sender refused by test milter")
	}
	return milter.RespContinue, nil
}

func (m *testMilter) RcptTo(rcpt, _ string, mod milter.Modifier) (*milter.Response, error) {
	m.log.record(m.from, "rcpt "+rcpt, mod)
	switch {
	case strings.HasPrefix(rcpt, "reject@"):
		return milter.RejectWithCodeAndReason(550, "5.7.1 not a customer")
	case strings.HasPrefix(rcpt, "tempfail@"):
		return milter.RespTempFail, nil
	case strings.HasPrefix(rcpt, "plainreject@"):
		return milter.RespReject, nil
	}
	return milter.RespContinue, nil
}

func (m *testMilter) BodyChunk(chunk []byte, _ milter.Modifier) (*milter.Response, error) {
	m.body.Write(chunk)
	return milter.RespContinue, nil
}

func (m *testMilter) EndOfMessage(mod milter.Modifier) (*milter.Response, error) {
	m.log.record(m.from, "eom", mod)
	if strings.Contains(m.body.String(), "REJECT-AT-EOD") {
		return milter.RejectWithCodeAndReason(554, "5.7.0 content refused")
	}
	if err := mod.AddHeader("X-Testenv-Milter", "seen"); err != nil {
		return nil, err
	}
	return milter.RespAccept, nil
}

func startTestMilter(t *testing.T) (addr string, log *milterLog) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	log = &milterLog{stages: map[string]map[string]map[string]string{}}
	srv := milter.NewServer(
		milter.WithMilter(func() milter.Milter { return &testMilter{log: log} }),
		milter.WithAction(milter.OptAddHeader),
	)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "inet:" + ln.Addr().String(), log
}

// TestPostfixMilter checks that the milter is called from both listeners
// with the configured macros, and documents what an SMTP client sees for
// each kind of milter verdict.
func TestPostfixMilter(t *testing.T) {
	t.Parallel()
	sink := StartSink(t)
	milterAddr, mlog := startTestMilter(t)
	pf := StartPostfix(t, PostfixOptions{
		MilterAddr: milterAddr,
		RelayTo:    sink.Addr(),
		SASLUsers:  map[string]string{"dave@cust.test": "pw", "erin": "pw2"},
	})

	tests := []struct {
		name      string
		submit    *Credentials
		from      string
		to        []string
		body      string
		wantMail  string   // "code enhanced" of the MAIL reply
		wantRcpts []string // "code enhanced" per RCPT
		wantEOD   string   // "" if DATA must not be reached
	}{
		{"accepted", nil, "ok@cust.test", []string{"a@remote.example", "b@remote.example"}, "hello", "250 2.1.0", []string{"250 2.1.5", "250 2.1.5"}, "250 2.0.0"},
		{"rcpt rejected with reply", nil, "r1@cust.test", []string{"reject@remote.example", "a@remote.example"}, "hello", "250 2.1.0", []string{"550 5.7.1", "250 2.1.5"}, "250 2.0.0"},
		{"rcpt plain reject", nil, "r2@cust.test", []string{"plainreject@remote.example"}, "hello", "250 2.1.0", []string{"550 5.7.1"}, ""},
		{"rcpt tempfail", nil, "r3@cust.test", []string{"tempfail@remote.example"}, "hello", "250 2.1.0", []string{"451 4.7.1"}, ""},
		{"sender rejected", nil, "reject@cust.test", []string{"a@remote.example"}, "hello", "550 5.7.1", nil, ""},
		{"rejected at end of data", nil, "eod@cust.test", []string{"a@remote.example"}, "REJECT-AT-EOD", "250 2.1.0", []string{"250 2.1.5"}, "554 5.7.0"},
		{"submission, realm login", &Credentials{"dave@cust.test", "pw"}, "sub@cust.test", []string{"a@remote.example"}, "hello", "250 2.1.0", []string{"250 2.1.5"}, "250 2.0.0"},
		{"submission, plain login", &Credentials{"erin", "pw2"}, "sub2@cust.test", []string{"a@remote.example"}, "hello", "250 2.1.0", []string{"250 2.1.5"}, "250 2.0.0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sink.Reset()
			opts := SendOptions{LocalAddr: "127.0.0.9", From: tc.from, To: tc.to, Data: []byte("Subject: " + tc.name + "\r\n\r\n" + tc.body + "\r\n")}
			addr := pf.SMTPAddr()
			if tc.submit != nil {
				addr = pf.SubmissionAddr()
				opts.Auth = tc.submit
			}
			res, err := SendMail(addr, opts)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("transaction:\n%s", res)
			code := func(r *Reply) string {
				if r == nil {
					return ""
				}
				return fmt.Sprintf("%d %s", r.Code, r.EnhancedCode)
			}
			if got := code(res.Mail); got != tc.wantMail {
				t.Errorf("MAIL reply %q, want %q", got, tc.wantMail)
			}
			var gotRcpts []string
			for _, r := range res.Rcpts {
				gotRcpts = append(gotRcpts, code(&r.Reply))
			}
			if !slices.Equal(gotRcpts, tc.wantRcpts) {
				t.Errorf("RCPT replies %q, want %q", gotRcpts, tc.wantRcpts)
			}
			if got := code(res.EndOfData); got != tc.wantEOD {
				t.Errorf("end-of-data reply %q, want %q", got, tc.wantEOD)
			}

			// Macros: client identity, listener name and login must reach
			// the milter at MAIL and (from cleanup, not smtpd) at end of
			// data; the queue id at end of data.
			wantDaemon, wantAuthen := DefaultSMTPDaemonName, ""
			if tc.submit != nil {
				wantDaemon, wantAuthen = DefaultSubmissionDaemonName, tc.submit.Username
			}
			checkMacros := func(stage string) {
				got := mlog.get(tc.from, stage)
				if got["{client_addr}"] != "127.0.0.9" || got["{daemon_name}"] != wantDaemon || got["{mail_addr}"] != tc.from || got["{auth_authen}"] != wantAuthen {
					t.Errorf("macros at %s = %v; want {client_addr}=127.0.0.9 {daemon_name}=%s {mail_addr}=%s {auth_authen}=%q",
						stage, got, wantDaemon, tc.from, wantAuthen)
				}
			}
			checkMacros("mail")
			for _, rcpt := range tc.to {
				if r := mlog.get(tc.from, "rcpt "+rcpt); tc.wantRcpts != nil && r["{rcpt_addr}"] != rcpt {
					t.Errorf("macros at RCPT %s = %v", rcpt, r)
				}
			}
			if tc.wantEOD == "" {
				return
			}
			checkMacros("eom")
			eom := mlog.get(tc.from, "eom")
			if eom["i"] == "" || !strings.Contains(res.EndOfData.Text, eom["i"]) && res.Delivered() {
				t.Errorf("queue id macro at end of data = %q; reply %q", eom["i"], res.EndOfData)
			}
			if _, ok := mlog.get(tc.from, "mail")["i"]; ok {
				t.Logf("note: queue id already known at MAIL")
			}
			if !res.Delivered() {
				return
			}
			msgs, err := sink.WaitFor(1, 20*time.Second)
			if err != nil {
				t.Fatalf("%v\npostfix log:\n%s", err, tail(pf.Log(), 30))
			}
			if !strings.Contains(string(msgs[0].Data), "X-Testenv-Milter: seen") {
				t.Errorf("milter header missing:\n%s", msgs[0].Data)
			}
			if want := slices.DeleteFunc(slices.Clone(tc.to), func(a string) bool { return strings.HasPrefix(a, "reject@") }); !slices.Equal(msgs[0].To, want) {
				t.Errorf("delivered to %q, want %q", msgs[0].To, want)
			}
		})
	}
	t.Run("sendmail uses non_smtpd_milters", func(t *testing.T) {
		sink.Reset()
		if err := pf.Sendmail("local@provider.test", []string{"x@remote.example"}, []byte("Subject: local\n\nhi\n")); err != nil {
			t.Fatal(err)
		}
		msgs, err := sink.WaitFor(1, 20*time.Second)
		if err != nil {
			t.Fatalf("%v\npostfix log:\n%s", err, tail(pf.Log(), 30))
		}
		if !strings.Contains(string(msgs[0].Data), "X-Testenv-Milter: seen") {
			t.Errorf("milter header missing:\n%s", msgs[0].Data)
		}
		t.Logf("macros for sendmail: mail=%v eom=%v", mlog.get("local@provider.test", "mail"), mlog.get("local@provider.test", "eom"))
	})
	for _, stage := range []string{"mail", "rcpt a@remote.example", "rcpt b@remote.example", "eom"} {
		t.Logf("macros seen by the milter for ok@cust.test at %s: %v", stage, mlog.get("ok@cust.test", stage))
	}
}

// TestPostfixMilterDown documents what clients see when the milter cannot be
// reached and milter_default_action is the default "tempfail".
func TestPostfixMilterDown(t *testing.T) {
	t.Parallel()
	ports, err := freePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	pf := StartPostfix(t, PostfixOptions{MilterAddr: fmt.Sprintf("inet:127.0.0.1:%d", ports[0])})
	res, err := SendMail(pf.SMTPAddr(), SendOptions{From: "a@cust.test", To: []string{"b@remote.example"}, Data: []byte("Subject: x\r\n\r\nx\r\n")})
	if err != nil {
		t.Fatalf("SendMail: %v (partial result:\n%s)", err, res)
	}
	t.Logf("transaction with milter down:\n%s", res)
	if res.Delivered() {
		t.Fatal("message accepted although the milter is down and the default action is tempfail")
	}
	var codes []int
	for _, r := range []*Reply{res.Mail, res.EndOfData} {
		if r != nil {
			codes = append(codes, r.Code)
		}
	}
	for _, r := range res.Rcpts {
		codes = append(codes, r.Code)
	}
	if !slices.ContainsFunc(codes, func(c int) bool { return c/100 == 4 }) {
		t.Errorf("no 4xx reply in the transaction:\n%s", res)
	}
}

// fakeTB records Skip and Fatal calls instead of ending the test.
type fakeTB struct {
	testing.TB
	skipped, fatal string
}

func (f *fakeTB) Helper()                           {}
func (f *fakeTB) Skip(args ...any)                  { f.skipped = fmt.Sprint(args...) }
func (f *fakeTB) Skipf(format string, args ...any)  { f.skipped = fmt.Sprintf(format, args...) }
func (f *fakeTB) Fatalf(format string, args ...any) { f.fatal = fmt.Sprintf(format, args...) }

func TestNeed(t *testing.T) {
	tests := []struct {
		name      string
		ci        string
		bins      []string
		wantSkip  bool
		wantFatal bool
	}{
		{"present", "", []string{"sh"}, false, false},
		{"present in sbin only", "true", []string{"postconf"}, false, false},
		{"missing", "", []string{"sh", "no-such-program-testenv"}, true, false},
		{"missing in CI", "true", []string{"no-such-program-testenv"}, false, true},
		{"CI not exactly true", "1", []string{"no-such-program-testenv"}, true, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("CI", tc.ci)
			if tc.name == "present in sbin only" {
				Need(t, "postconf") // skip unless Postfix is installed
				t.Setenv("PATH", "/nonexistent")
			}
			f := &fakeTB{TB: t}
			Need(f, tc.bins...)
			if (f.skipped != "") != tc.wantSkip || (f.fatal != "") != tc.wantFatal {
				t.Fatalf("skipped=%q fatal=%q; want skip %v, fatal %v", f.skipped, f.fatal, tc.wantSkip, tc.wantFatal)
			}
			msg := f.skipped + f.fatal
			if msg != "" && (!strings.Contains(msg, "no-such-program-testenv") || !strings.Contains(msg, InstallScript)) {
				t.Errorf("message %q does not name the program and %s", msg, InstallScript)
			}
		})
	}
}
