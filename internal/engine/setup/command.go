package setup

import (
	"fmt"
	"io"
	"sort"
	"sync"

	"github.com/aupguard/aupguard/internal/engine/config"
)

// Command is a family's CLI subcommand: `aupguard NAME ARGS...`.
type Command struct {
	// Name is the subcommand ("optout", "quota", "dkim").
	Name string
	// Summary is its one line in `aupguard help`.
	Summary string
	// Run runs it with the arguments after its name and returns the
	// process's exit status (0 ok, 1 failed, 2 usage).
	Run func(args []string, env *Env) int
}

// Env is what a command gets from the binary.
type Env struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// LoadConfig loads and validates the config file at path with every
	// family's sections, printing each error with its place on Stderr.
	LoadConfig func(path string) (*config.Config, bool)
	// OpenDeps opens the store, secret and resolver for cfg (the caller
	// closes Deps.Store).
	OpenDeps func(cfg *config.Config) (*Deps, error)
}

// registry is the process's families, filled by package plugins at init.
var registry struct {
	mu   sync.Mutex
	fams []Family
}

// Register adds families to the process's list (package plugins does,
// once, at init). A family or command name registered twice panics: it
// is a programming error found by any test.
func Register(fams ...Family) {
	registry.mu.Lock()
	defer registry.mu.Unlock()
	for _, f := range fams {
		for _, o := range registry.fams {
			if o.Name == f.Name {
				panic(fmt.Sprintf("setup: family %q registered twice", f.Name))
			}
		}
		registry.fams = append(registry.fams, f)
	}
	seen := map[string]bool{}
	for _, c := range commandsOf(registry.fams) {
		if seen[c.Name] {
			panic(fmt.Sprintf("setup: command %q registered twice", c.Name))
		}
		seen[c.Name] = true
	}
}

// Families returns the registered families, in registration order.
func Families() []Family {
	registry.mu.Lock()
	defer registry.mu.Unlock()
	return append([]Family(nil), registry.fams...)
}

// Commands returns the registered families' commands, by name.
func Commands() []Command { return commandsOf(Families()) }

func commandsOf(fams []Family) []Command {
	var out []Command
	for _, f := range fams {
		out = append(out, f.Commands...)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
