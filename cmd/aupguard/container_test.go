package main

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// compose is the part of a compose file the test reads.
type compose struct {
	Services map[string]struct {
		Image   string `yaml:"image"`
		Build   *struct{ Context, Dockerfile string }
		Volumes []string `yaml:"volumes"`
		Secrets []string `yaml:"secrets"`
		Ports   []string `yaml:"ports"`
		Command []string `yaml:"command"`
		Depends map[string]struct {
			Condition string `yaml:"condition"`
		} `yaml:"depends_on"`
		Networks map[string]struct {
			IPv4 string `yaml:"ipv4_address"`
		} `yaml:"networks"`
	} `yaml:"services"`
	Networks map[string]struct {
		IPAM struct {
			Config []struct{ Subnet string } `yaml:"config"`
		} `yaml:"ipam"`
	} `yaml:"networks"`
	Volumes map[string]any `yaml:"volumes"`
	Secrets map[string]struct {
		File string `yaml:"file"`
	} `yaml:"secrets"`
}

// TestComposeExample checks configs/container (no container engine runs
// here): the compose file's structure and that its pieces fit together
// (the networks the gateway allows are the compose network, Postfix's
// milter address is the gateway's listener, the report relay is the
// milter-less listener the Postfix image opens for the gateway's address,
// every secret and build context exists or is documented), the image
// ships the container config, and that config passes check-config (its
// /run/secrets files replaced by real 0600 files).
func TestComposeExample(t *testing.T) {
	root := filepath.Join("..", "..")
	dir := filepath.Join(root, "configs", "container")
	b, err := os.ReadFile(filepath.Join(dir, "compose.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var c compose
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(false)
	if err := dec.Decode(&c); err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	for _, s := range []string{"redis", "aupguard", "postfix"} {
		if _, ok := c.Services[s]; !ok {
			t.Fatalf("compose.yaml has no %s service", s)
		}
	}
	gw, pf, rd := c.Services["aupguard"], c.Services["postfix"], c.Services["redis"]
	if !strings.Contains(strings.Join(rd.Command, " "), "--appendonly yes") {
		t.Errorf("redis runs without appendonly: %v", rd.Command)
	}
	if _, ok := gw.Depends["redis"]; !ok {
		t.Error("aupguard does not depend on redis")
	}
	if _, ok := pf.Depends["aupguard"]; !ok {
		t.Error("postfix does not depend on aupguard")
	}
	for name, s := range map[string]*struct{ Context, Dockerfile string }{"aupguard": gw.Build, "postfix": pf.Build} {
		if s == nil {
			t.Errorf("%s has no build", name)
			continue
		}
		df := s.Dockerfile
		if df == "" {
			df = "Dockerfile"
		}
		if _, err := os.Stat(filepath.Join(dir, s.Context, df)); err != nil {
			t.Errorf("%s: build context: %v", name, err)
		}
	}
	if !contains(gw.Volumes, "./aupguard.yaml:/etc/aupguard/aupguard.yaml:ro") {
		t.Errorf("aupguard does not mount the config read-only: %v", gw.Volumes)
	}
	for _, v := range append(append([]string(nil), gw.Volumes...), c.Services["redis"].Volumes...) {
		if src, _, _ := strings.Cut(v, ":"); !strings.HasPrefix(src, ".") {
			if _, ok := c.Volumes[src]; !ok {
				t.Errorf("volume %q is not declared", src)
			}
		}
	}
	for _, s := range gw.Secrets {
		if _, ok := c.Secrets[s]; !ok {
			t.Errorf("secret %s is not declared", s)
		}
	}
	for _, p := range gw.Ports {
		if !strings.HasPrefix(p, "127.0.0.1:") {
			t.Errorf("aupguard publishes %q beyond the host's loopback", p)
		}
	}
	net := c.Networks["mail"]
	if len(net.IPAM.Config) != 1 {
		t.Fatalf("network mail: %+v", net)
	}
	subnet := netip.MustParsePrefix(net.IPAM.Config[0].Subnet)
	gwIP := netip.MustParseAddr(gw.Networks["mail"].IPv4)
	if !subnet.Contains(gwIP) || !subnet.Contains(netip.MustParseAddr(pf.Networks["mail"].IPv4)) {
		t.Errorf("addresses outside %s", subnet)
	}

	// The container config, with its secrets as real files.
	cfgText, err := os.ReadFile(filepath.Join(dir, "aupguard.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	secrets := t.TempDir()
	for _, n := range []string{"aupguard_secret", "aupguard_admin_token"} {
		if !strings.Contains(string(cfgText), "/run/secrets/"+n) {
			t.Errorf("config does not read %s from /run/secrets", n)
		}
		if err := os.WriteFile(filepath.Join(secrets, n), []byte(strings.Repeat("k", 64)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfgPath := filepath.Join(t.TempDir(), "aupguard.yaml")
	// check-config opens the store's client: the service name "redis"
	// would be asked of the host's DNS, so it is a dead loopback port here.
	if !bytes.Contains(cfgText, []byte(`addrs: ["redis:6379"]`)) {
		t.Error(`store.redis.addrs is not the redis service ["redis:6379"]`)
	}
	local := bytes.ReplaceAll(cfgText, []byte("/run/secrets/"), []byte(secrets+"/"))
	local = bytes.ReplaceAll(local, []byte(`"redis:6379"`), []byte(`"127.0.0.1:1"`))
	if err := os.WriteFile(cfgPath, local, 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if rc := runMain([]string{"check-config", "-q", "-config", cfgPath}, &out, &errb); rc != 0 {
		t.Fatalf("check-config of configs/container/aupguard.yaml: %d\n%s", rc, errb.String())
	}
	cfg, ok := loadConfig(cfgPath, &errb)
	if !ok {
		t.Fatal(errb.String())
	}
	if cfg.Milter.Listen != "inet:0.0.0.0:8891" || cfg.Admin.Listen != "0.0.0.0:8892" {
		t.Errorf("listeners %q %q: a container's loopback is its own", cfg.Milter.Listen, cfg.Admin.Listen)
	}
	if len(cfg.Milter.AllowedMTAs) != 1 || cfg.Milter.AllowedMTAs[0] != subnet.String() {
		t.Errorf("milter.allowed_mtas %v, want the compose network %s", cfg.Milter.AllowedMTAs, subnet)
	}
	if cfg.Store.Backend != "redis" {
		t.Errorf("store %+v, want the redis service", cfg.Store)
	}

	// Postfix's side: the milter is the gateway's listener; the report
	// relay is a listener without the milter, open to the gateway only.
	mainCF, err := os.ReadFile(filepath.Join(dir, "postfix", "main.cf"))
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^smtpd_milters = inet:aupguard:8891$`).Match(mainCF) {
		t.Errorf("postfix main.cf does not point at inet:aupguard:8891")
	}
	pfDocker, err := os.ReadFile(filepath.Join(dir, "postfix", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	relay := regexp.MustCompile(`(\d+)/inet=\d+ inet n - n - - smtpd -o smtpd_milters= -o mynetworks=([0-9.]+)/32`).FindSubmatch(pfDocker)
	if relay == nil || string(relay[1]) != "10025" || string(relay[2]) != gwIP.String() || cfg.Reports.SMTP.Host != "postfix" || cfg.Reports.SMTP.Port != 10025 {
		t.Errorf("report relay: postfix %q, reports.smtp %s:%d", relay, cfg.Reports.SMTP.Host, cfg.Reports.SMTP.Port)
	}

	// The image ships this config and runs unprivileged.
	df, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"COPY configs/container/aupguard.yaml /etc/aupguard/aupguard.yaml", "USER 65532:65532"} {
		if !strings.Contains(string(df), want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
}
