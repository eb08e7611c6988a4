package setup

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"

	"github.com/aupguard/aupguard/internal/engine/config"
)

// Command is a family's CLI subcommand: `aupguard NAME ARGS...`.
type Command struct {
	// Name is the subcommand ("optout", "quota", "dkim").
	Name string
	// Parent, when set, makes it a subcommand of the binary's command
	// Parent: `aupguard customer status ID` is opt-out's "status" under
	// "customer"; the core command hands the subcommands it does not know
	// to the families (Subcommand).
	Parent string
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
	// ConfigOptions are the options config.Load validates with (every
	// family's checks and sections), for a command that reports a config
	// error its own way.
	ConfigOptions config.Options
	// OpenDeps opens the store, secret and resolver for cfg (the caller
	// closes Deps.Store).
	OpenDeps func(cfg *config.Config) (*Deps, error)
	// Audit records a change the command made in the audit trail (who:
	// the CLI's user; what: action on target, before and after). A
	// failure to record is a warning on Stderr, not the command's failure.
	Audit func(cfg *config.Config, action, target, before, after string)
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
	for _, f := range registry.fams {
		for _, c := range f.Commands {
			if seen[c.Parent+" "+c.Name] {
				panic(fmt.Sprintf("setup: command %q registered twice", strings.TrimSpace(c.Parent+" "+c.Name)))
			}
			seen[c.Parent+" "+c.Name] = true
		}
	}
}

// Families returns the registered families, in registration order.
func Families() []Family {
	registry.mu.Lock()
	defer registry.mu.Unlock()
	return append([]Family(nil), registry.fams...)
}

// Commands returns the registered families' commands under parent (""
// for the binary's own level), by name.
func Commands(parent string) []Command {
	var out []Command
	for _, f := range Families() {
		for _, c := range f.Commands {
			if c.Parent == parent {
				out = append(out, c)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Subcommand returns the registered command name under parent.
func Subcommand(parent, name string) (Command, bool) {
	for _, c := range Commands(parent) {
		if c.Name == name {
			return c, true
		}
	}
	return Command{}, false
}
