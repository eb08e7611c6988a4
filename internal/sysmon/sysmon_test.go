package sysmon

import (
	"reflect"
	"testing"
)

func TestPlan(t *testing.T) {
	tests := []struct {
		name    string
		mode    string
		in      []string
		reexec  bool
		env     []string
		godebug string
		source  string
	}{
		{"awake without GODEBUG executes again", Awake, []string{"PATH=/bin", "HOME=/root"}, true, []string{"PATH=/bin", "HOME=/root", "GODEBUG=" + Setting}, Setting, SourceReexec},
		{"awake keeps other GODEBUG settings", Awake, []string{"GODEBUG=madvdontneed=1", "PATH=/bin"}, true, []string{"GODEBUG=madvdontneed=1," + Setting, "PATH=/bin"}, "madvdontneed=1," + Setting, SourceReexec},
		{"awake with an empty GODEBUG", Awake, []string{"GODEBUG="}, true, []string{"GODEBUG=" + Setting}, Setting, SourceReexec},
		{"the service's environment: no re-exec", Awake, []string{"GODEBUG=" + Setting}, false, nil, Setting, SourceEnvironment},
		{"the operator's schedtrace stands", Awake, []string{"GODEBUG=schedtrace=0"}, false, nil, "schedtrace=0", SourceEnvironment},
		{"schedtrace among others", Awake, []string{"X=1", "GODEBUG=gctrace=1, schedtrace=1000"}, false, nil, "gctrace=1, schedtrace=1000", SourceEnvironment},
		{"a name that only starts like it", Awake, []string{"GODEBUG=schedtracex=1"}, true, []string{"GODEBUG=schedtracex=1," + Setting}, "schedtracex=1," + Setting, SourceReexec},
		{"after the re-exec", Awake, []string{"GODEBUG=" + Setting, marker + "=1"}, false, nil, Setting, SourceReexec},
		{"default: nothing changes", Default, []string{"PATH=/bin"}, false, nil, "", SourceRuntime},
		{"default keeps the environment's schedtrace", Default, []string{"GODEBUG=" + Setting}, false, nil, Setting, SourceEnvironment},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := Plan(tc.mode, tc.in)
			if s.Reexec != tc.reexec || !reflect.DeepEqual(s.Env, tc.env) || s.GODEBUG != tc.godebug || s.Source != tc.source || s.Mode != tc.mode {
				t.Errorf("Plan(%q, %q) = %+v; want reexec %v env %q godebug %q source %q", tc.mode, tc.in, s, tc.reexec, tc.env, tc.godebug, tc.source)
			}
		})
	}
}
