package main

import (
	"fmt"
	"io"
	"runtime/debug"
	"strings"

	"github.com/aupguard/aupguard/internal/engine/setup"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func init() {
	register("version", "print the version", func(args []string, stdout, stderr io.Writer) int {
		var notes []string
		for _, f := range setup.Families() {
			if f.Build != "" {
				notes = append(notes, f.Build)
			}
		}
		if len(notes) == 0 {
			fmt.Fprintf(stdout, "aupguard %s\n", versionString())
			return 0
		}
		fmt.Fprintf(stdout, "aupguard %s (%s)\n", versionString(), strings.Join(notes, "; "))
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
