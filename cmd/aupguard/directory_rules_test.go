package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestCustomerCommandRefusesUnlessForced: `aupguard customer add` against
// a running `aupguard serve` (memory store: through its admin API) is
// refused for a /8 and a catch-all login, naming the field and the bound,
// and writes nothing; with -force it is written, the command prints each
// waived rule, and the gateway logs it (directory_forced).
func TestCustomerCommandRefusesUnlessForced(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	dir := t.TempDir()
	free := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().String()
	}
	milterAddr, adminAddr := free(), free()
	token := filepath.Join(dir, "token")
	if err := os.WriteFile(token, []byte("0123456789abcdef0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "aupguard.yaml")
	cfg := fmt.Sprintf(`milter: {listen: "inet:%s"}
log: {format: text}
store: {backend: memory, path: %q}
admin: {listen: %q, token_file: %q}
optout: {unsubscribe: {listen: "off"}}
chain: [sender_identity]
customers:
  - id: acme
    networks: [127.0.0.0/24]
    domains: [acme.example]
`, milterAddr, filepath.Join(dir, "state"), adminAddr, token)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := startServe(t, bin, cfgPath, milterAddr)
	waitFor(t, "the admin server", func() bool { return strings.Contains(srv.stderr.String(), "admin server listening") })
	run := func(args ...string) (int, string, string) {
		cmd := exec.Command(bin, append([]string{"customer"}, append(args, "-config", cfgPath)...)...)
		var out, errb strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return code, out.String(), errb.String()
	}
	code, _, stderr := run("add", "wide", "-set", "networks=[10.0.0.0/8]", "-set", "logins=[\"*@*\"]", "-set", "domains=[wide.example]")
	if code != 1 || !strings.Contains(stderr, "customer wide: networks[0]: network 10.0.0.0/8 is broader than directory.max_network_prefix.ipv4 (/16)") ||
		!strings.Contains(stderr, `customer wide: logins[0]: login pattern "*@*" is a catch-all`) || !strings.Contains(stderr, "set force: true") {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
	if code, _, _ := run("show", "wide"); code == 0 {
		t.Fatal("the refused customer was written")
	}
	code, stdout, stderr := run("add", "wide", "-force", "-set", "networks=[10.0.0.0/8]", "-set", "logins=[\"*@*\"]", "-set", "domains=[wide.example]")
	if code != 0 || !strings.Contains(stdout, "add wide") ||
		!strings.Contains(stderr, "warning: customer wide: networks[0]: forced: network 10.0.0.0/8 is broader") ||
		!strings.Contains(stderr, "warning: customer wide: logins[0]: forced: login pattern") {
		t.Fatalf("forced: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	waitFor(t, "the gateway's directory_forced lines", func() bool {
		return strings.Count(srv.stderr.String(), "customer directory change forced") == 2
	})
	if log := srv.stderr.String(); !strings.Contains(log, `level=WARN msg="customer directory change forced" event=directory_forced customer=wide op=add via=cli`) {
		t.Fatalf("gateway log:\n%s", log)
	}
	// A control character is refused even forced.
	if code, _, stderr := run("add", "nul", "-force", "-set", "logins=[\"a\\0b\"]", "-set", "domains=[nul.example]"); code != 1 || !strings.Contains(stderr, "control character U+0000") {
		t.Fatalf("NUL login: exit %d\n%s", code, stderr)
	}
}
