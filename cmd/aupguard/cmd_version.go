package main

import (
	"fmt"
	"io"
	"runtime/debug"

	"github.com/aupguard/aupguard/internal/checks/auth"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func init() {
	register("version", "print the version", func(args []string, stdout, stderr io.Writer) int {
		fmt.Fprintf(stdout, "aupguard %s (RSA signing: %s)\n", versionString(), auth.RSABackend)
		return 0
	})
}

// versionString is the binary's version: the -ldflags one, else the
// module version of a `go install`ed build, else "dev".
func versionString() string {
	v := version
	if bi, ok := debug.ReadBuildInfo(); ok && v == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		v = bi.Main.Version
	}
	return v
}
