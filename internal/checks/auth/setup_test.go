package auth_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/gateway"
)

// TestBuildTakesKeysReadAtLoad builds the gateway as serve does after the
// key files are gone: the signer must use the keys read when the config
// was loaded (once), not open the files again.
func TestBuildTakesKeysReadAtLoad(t *testing.T) {
	keys := keyDir(t)
	raw, err := os.ReadFile("testdata/config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	text := strings.NewReplacer("DNSADDR", "127.0.0.1:53", "KEYDIR", keys).Replace(string(raw))
	cfg, err := config.Parse([]byte(text), "testdata/config.yaml", gateway.ConfigOptions())
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	files, _ := filepath.Glob(filepath.Join(keys, "*.pem"))
	for _, f := range files {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
	deps, err := gateway.OpenDeps(cfg, clock.System{}, nil)
	if err != nil {
		t.Fatalf("deps: %v", err)
	}
	t.Cleanup(func() { _ = deps.Store.Close() })
	if _, err := gateway.Build(deps); err != nil {
		t.Fatalf("build after the key files were read: %v", err)
	}
	// A config that is loaded now sees that the files are gone.
	if _, err := config.Parse([]byte(text), "testdata/config.yaml", gateway.ConfigOptions()); err == nil || !strings.Contains(err.Error(), "gw-rsa.pem does not exist") {
		t.Fatalf("config without its key files: %v", err)
	}
}
