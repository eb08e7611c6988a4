package perf

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aupguard/aupguard/internal/loadgen"
	"github.com/aupguard/aupguard/internal/testkit/fakedns"
	"github.com/aupguard/aupguard/internal/testkit/testenv"
	"github.com/aupguard/aupguard/milter"
)

// perfEnv is the shared part of a perf run: Redis, fake DNS and the
// gateway's config with every check enabled.
type perfEnv struct {
	dir     string
	redis   *testenv.Redis
	logPath string
	dnsAddr string
	// keys are the signing key files by type ("rsa", "ed25519").
	keys map[string]string
	// keyType is the key the next gateway signs with; storeTimeout its
	// store.timeout.
	keyType      string
	storeTimeout string
}

func newPerfEnv(t testing.TB, dir string) *perfEnv {
	e := &perfEnv{dir: dir, redis: testenv.StartRedis(t, testenv.RedisOptions{}), logPath: filepath.Join(dir, "aupguard.log"),
		keyType: "rsa", storeTimeout: "500ms"}
	e.dnsAddr, e.keys = startPerfDNS(t, dir)
	return e
}

// config is a production-like config with every check in the chain, the
// Redis store and the fake DNS server; limits are set high enough for the
// run (the checks still do all their counter work).
func (e *perfEnv) config(t testing.TB, listen string) string {
	path := filepath.Join(e.dir, fmt.Sprintf("aupguard-%s.yaml", listen[len(listen)-5:]))
	cfg := fmt.Sprintf(perfConfig, listen, e.redis.Addr(), e.dir, e.storeTimeout, e.dnsAddr, "sel-"+e.keyType, e.keys[e.keyType])
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func (e *perfEnv) startGateway(t testing.TB, bin string) string {
	addr, _ := e.startGatewayPID(t, bin)
	return addr
}

func (e *perfEnv) startGatewayPID(t testing.TB, bin string) (string, int) {
	t.Helper()
	listen := "inet:" + freeAddr(t)
	path := e.config(t, listen)
	if out, err := runCmd(bin, "check-config", "-q", "-config", path); err != nil {
		t.Fatalf("perf config: %v\n%s", err, out)
	}
	f, err := os.OpenFile(e.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	t.Setenv("AUPG_PERF_LISTEN", listen[len("inet:"):])
	return startProcPID(t, bin, f, "serve", "-config", path)
}

func (e *perfEnv) gatewayLog() string {
	b, _ := os.ReadFile(e.logPath)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

func (e *perfEnv) loadOpts(addr string, messages, sessions, size int, rate float64) loadgen.Options {
	network, address, _ := milter.ParseAddress("inet:" + addr)
	return loadgen.Options{Network: network, Address: address, Messages: messages, Sessions: sessions, Size: size, Rate: rate,
		Client: "127.0.0.5", From: "load@acme.example"}
}

// perfConfig: milter listen, Redis address, DNS server, state dir, key file.
const perfConfig = `
milter: {listen: %q, decision_timeout: 30s}
log: {format: json, level: warn}
store: {backend: redis, redis: {addrs: [%q]}, path: %q, timeout: %s}
dns: {servers: [%q], timeout: 1s}
provider:
  hostnames: ["*.provider.test"]
  authserv_id: mx.provider.test
  egress_ips: [192.0.2.10]
optout: {unsubscribe: {listen: "off", base_url: "https://unsub.provider.test/u/"}}
admin: {listen: "off"}
spike: {enabled: true}
defaults:
  limits: {messages_per_minute: 100000000, messages_per_hour: 100000000, messages_per_day: 100000000,
           recipients_per_hour: 100000000, recipients_per_day: 100000000, bytes_per_day: 1000GB,
           per_recipient_per_hour: 100000000, per_recipient_per_day: 100000000,
           message_size: 25MB, recipients_per_message: 100, spike_floor: 100000000}
customers:
  - id: acme
    networks: [127.0.0.5/32]
    domains: [acme.example]
    unsubscribe: add
    dkim:
      - {domain: acme.example, selector: %s, key_file: %q}
`

// startPerfDNS creates an RSA-2048 and an Ed25519 signing key and serves
// acme.example's SPF, DMARC (p=reject) and DKIM records from an in-process
// DNS server.
func startPerfDNS(t testing.TB, dir string) (addr string, keys map[string]string) {
	t.Helper()
	bin := filepath.Join(dir, "aupguard")
	keys = map[string]string{}
	zone := "acme.example. TXT \"v=spf1 ip4:192.0.2.10 -all\"\n" +
		"_dmarc.acme.example. TXT \"v=DMARC1; p=reject\"\n"
	for _, typ := range []string{"rsa", "ed25519"} {
		keyFile := filepath.Join(dir, typ+".pem")
		sel := "sel-" + typ
		if out, err := runCmd(bin, "dkim", "keygen", "-out", keyFile, "-domain", "acme.example", "-selector", sel, "-type", typ); err != nil {
			t.Fatalf("keygen: %v\n%s", err, out)
		}
		out, err := runCmd(bin, "dkim", "record", "-key", keyFile, "-domain", "acme.example", "-selector", sel)
		if err != nil {
			t.Fatalf("record: %v\n%s", err, out)
		}
		keys[typ] = keyFile
		zone += sel + "._domainkey.acme.example. TXT " + strings.Join(quoted(out), " ") + "\n"
	}
	return fakedns.Start(t, zone).Addr(), keys
}

// quoted returns the quoted strings of a record printed over several lines.
func quoted(out string) []string {
	var parts []string
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), ";") {
			continue
		}
		for {
			i := strings.IndexByte(line, '"')
			if i < 0 {
				break
			}
			j := strings.IndexByte(line[i+1:], '"')
			if j < 0 {
				break
			}
			parts = append(parts, line[i:i+j+2])
			line = line[i+j+2:]
		}
	}
	return parts
}

func runCmd(bin string, args ...string) (string, error) {
	out, err := exec.Command(bin, args...).CombinedOutput()
	return string(out), err
}
