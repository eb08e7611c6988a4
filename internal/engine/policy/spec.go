package policy

import (
	"fmt"
	"sort"
	"strings"
)

// FindingSpec declares one finding a check can report: its stable name,
// the action and reply it gets when the configuration says nothing, and a
// line for the documentation. A check may decide a finding's action per
// message (DMARC's require_alignment turns an accept into a reject); the
// declared action is the usual one.
type FindingSpec struct {
	Name   string
	Action Action
	// Reply is the finding's usual reply; the zero Reply means the generic
	// reply for the action.
	Reply Reply
	Doc   string
	// Tally, when set, is the postmaster report's table that counts the
	// finding (TallyLimit, TallySpike, TallyOptedOut...); the report
	// names no finding itself.
	Tally string
}

// The report's tallies (FindingSpec.Tally).
const (
	// TallyLimit: a volume limit reached (the report's limit hits).
	TallyLimit = "limit"
	// TallySpike: a volume spike (the report's spikes).
	TallySpike = "spike"
	// TallyOptedOut, TallySuppressed and TallyEscalated: a send to a
	// recipient on the customer's list, on the provider's list, and a
	// customer flagged for them (the report's opt-out table).
	TallyOptedOut   = "opted_out"
	TallySuppressed = "suppressed"
	TallyEscalated  = "escalated"
)

// Spec is what a check declares about itself, in code, next to the check:
// its name, every finding it can report, and where it may run relative to
// the other checks. The configuration is validated against the specs of
// the checks the binary knows: a misspelled check or finding name and a
// chain that cannot work are errors at their line.
type Spec struct {
	// Name is the check's name in the chain list and under checks:.
	Name string
	// Findings are every finding the check can report.
	Findings []FindingSpec
	// Needs are the checks whose results this check reads: each must be in
	// the chain, before this check (DMARC needs the SPF and DKIM results).
	Needs []string
	// AddsHeaders says the check adds header fields to accepted mail.
	AddsHeaders bool
	// SignsHeaders says the check signs the header section (DKIM): every
	// check that adds headers must run before it, or what it adds is not
	// covered by the signature (RFC 6376 §5.4).
	SignsHeaders bool
}

// Finding returns the declared finding called name.
func (s Spec) Finding(name string) (FindingSpec, bool) {
	for _, f := range s.Findings {
		if f.Name == name {
			return f, true
		}
	}
	return FindingSpec{}, false
}

// FindingNames returns the names of the declared findings, in declared order.
func (s Spec) FindingNames() []string {
	out := make([]string, len(s.Findings))
	for i, f := range s.Findings {
		out[i] = f.Name
	}
	return out
}

// ChainProblem is one reason a chain cannot work, at the chain position Index.
type ChainProblem struct {
	Index int
	Msg   string
}

// CheckChain reports every reason chain cannot work with the checks
// specs declares: a check that needs another one missing or placed after
// it, and a check that adds headers placed after one that signs them.
// Unknown names are left to the caller (they have no spec).
func CheckChain(chain []string, specs map[string]Spec) []ChainProblem {
	pos := make(map[string]int, len(chain))
	for i, n := range chain {
		if _, dup := pos[n]; !dup {
			pos[n] = i
		}
	}
	var out []ChainProblem
	for i, n := range chain {
		s, ok := specs[n]
		if !ok || pos[n] != i {
			continue
		}
		for _, need := range s.Needs {
			j, in := pos[need]
			switch {
			case !in:
				out = append(out, ChainProblem{i, fmt.Sprintf("check %q needs the results of %q, which is not in the chain (add it before %q)", n, need, n)})
			case j > i:
				out = append(out, ChainProblem{i, fmt.Sprintf("check %q needs the results of %q, which runs after it (move %q before %q)", n, need, need, n)})
			}
		}
		if s.AddsHeaders {
			for j := 0; j < i; j++ {
				if o, ok := specs[chain[j]]; ok && o.SignsHeaders {
					out = append(out, ChainProblem{i, fmt.Sprintf("check %q adds headers after %q signed them (move %q after %q)", n, chain[j], chain[j], n)})
				}
			}
		}
	}
	return out
}

// Suggest returns the candidate closest to s by edit distance when it is
// close enough to be a likely typo, or "" (for "did you mean" hints).
func Suggest(s string, candidates []string) string {
	best, bestD := "", -1
	for _, c := range candidates {
		d := editDistance(strings.ToLower(s), strings.ToLower(c))
		if bestD < 0 || d < bestD || d == bestD && c < best {
			best, bestD = c, d
		}
	}
	limit := len(s) / 3
	if limit < 2 {
		limit = 2
	}
	if bestD < 0 || bestD > limit {
		return ""
	}
	return best
}

// editDistance is the Levenshtein distance of a and b (bytes).
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// SpecIndex maps specs by name.
func SpecIndex(specs []Spec) map[string]Spec {
	m := make(map[string]Spec, len(specs))
	for _, s := range specs {
		m[s.Name] = s
	}
	return m
}

// SortedNames returns the specs' names sorted.
func SortedNames(specs map[string]Spec) []string {
	out := make([]string, 0, len(specs))
	for n := range specs {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
