package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestProductionBinaryLinksNoLoadTools: the gateway's binary carries no
// load generator, no test kit and no generated-customer code; those live
// in cmd/aupguard-load.
func TestProductionBinaryLinksNoLoadTools(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	const mod = "github.com/aupguard/aupguard/"
	deps := strings.Fields(string(out))
	if len(deps) < 10 || !strings.Contains(string(out), mod+"internal/engine/daemon") {
		t.Fatalf("go list -deps gave no plausible dependency list:\n%s", out)
	}
	for _, p := range deps {
		for _, banned := range []string{mod + "internal/loadgen", mod + "internal/testkit", mod + "cmd/aupguard-load"} {
			if p == banned || strings.HasPrefix(p, banned+"/") {
				t.Errorf("the aupguard binary links %s", p)
			}
		}
	}
}
