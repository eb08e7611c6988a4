package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// exampleConfig returns configs/aupguard.yaml with its state directory
// moved into a temporary directory and its listeners on free ports.
func exampleConfig(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../../configs/aupguard.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	s := strings.Replace(string(b), "path: ./state", "path: "+dir, 1)
	s = strings.Replace(s, "token_file: ./state/admin.token", "token_file: "+filepath.Join(dir, "admin.token"), 1)
	s = strings.Replace(s, "  listen: inet:127.0.0.1:8891\n", "  listen: inet:127.0.0.1:0\n", 1)
	s = strings.Replace(s, "listen: 127.0.0.1:8893", "listen: 127.0.0.1:0", 1)
	s = strings.Replace(s, "listen: 127.0.0.1:8892", "listen: 127.0.0.1:0", 1)
	p := filepath.Join(dir, "aupguard.yaml")
	if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestExampleConfigIsValid(t *testing.T) {
	var out, errOut bytes.Buffer
	p := exampleConfig(t)
	if code := runMain([]string{"check-config", "-config", p}, &out, &errOut); code != 0 {
		t.Fatalf("configs/aupguard.yaml does not validate (exit %d):\n%s", code, errOut.String())
	}
	for _, want := range []string{"OK, effective config follows", "listen: inet:127.0.0.1:0", "socket_group: postfix", "- postfix", "backend: memory"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("effective config lacks %q", want)
		}
	}
}

func TestCheckConfigReportsEveryError(t *testing.T) {
	p := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(p, []byte("milter:\n  listen: inet:0.0.0.0:8891\nstore:\n  backend: mysql\n"), 0o600)
	var out, errOut bytes.Buffer
	if code := runMain([]string{"check-config", "-config", p}, &out, &errOut); code != 1 {
		t.Fatalf("exit %d", code)
	}
	want := p + ":2: milter.listen: listening on non-loopback \"0.0.0.0\" requires milter.allowed_mtas\n" +
		p + ":4: store.backend: want memory or redis, got \"mysql\"\n2 error(s)\n"
	if errOut.String() != want {
		t.Fatalf("stderr:\n%s\nwant:\n%s", errOut.String(), want)
	}
}

func TestUnknownCommand(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := runMain([]string{"frobnicate"}, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "unknown command") {
		t.Fatalf("exit %d, %q", code, errOut.String())
	}
}

// TestCheckConfigPrintsEffectiveValues: the effective config leaves nothing
// null: each check shows enabled, on_error and every finding's action as
// they take effect; the customer inherits defaults.mode and the default
// limits beside its own.
func TestCheckConfigPrintsEffectiveValues(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := runMain([]string{"check-config", "-postfix", "", "-config", exampleConfig(t)}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d:\n%s", code, errOut.String())
	}
	s := out.String()
	if strings.Contains(s, "null") {
		t.Errorf("the effective config prints null:\n%s", grepLines(s, "null"))
	}
	for _, want := range []string{
		"    dmarc:\n        enabled: true\n        on_error: defer\n        findings:\n            dmarc_no_record: accept\n",
		"    header_syntax:\n        enabled: true\n        on_error: defer\n",
		"      mode: monitor\n",
		"        messages_per_hour: 5000\n", // acme's own
		"        messages_per_minute: 60\n", // from defaults
		"notifications:\n    enabled: true\n",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("effective config lacks %q", want)
		}
	}
}

// TestCheckConfigQuietPrintsNothing: -q (the systemd unit's ExecStartPre
// and ExecReload) prints nothing for a good config and every error for a
// bad one.
func TestCheckConfigQuietPrintsNothing(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := runMain([]string{"check-config", "-q", "-postfix", "", "-config", exampleConfig(t)}, &out, &errOut); code != 0 || out.Len() != 0 {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out.String(), errOut.String())
	}
	p := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(p, []byte("store:\n  backend: mysql\n"), 0o600)
	out.Reset()
	errOut.Reset()
	if code := runMain([]string{"check-config", "-q", "-config", p}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), p+":2: store.backend") {
		t.Fatalf("exit %d, stderr %q", code, errOut.String())
	}
}
