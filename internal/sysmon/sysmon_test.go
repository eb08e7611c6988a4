package sysmon

import (
	"reflect"
	"testing"
)

func TestEnv(t *testing.T) {
	tests := []struct {
		name    string
		in      []string
		want    []string
		changed bool
	}{
		{"no GODEBUG", []string{"PATH=/bin", "HOME=/root"}, []string{"PATH=/bin", "HOME=/root", "GODEBUG=" + Setting}, true},
		{"other settings kept", []string{"GODEBUG=madvdontneed=1", "PATH=/bin"}, []string{"GODEBUG=madvdontneed=1," + Setting, "PATH=/bin"}, true},
		{"empty GODEBUG", []string{"GODEBUG="}, []string{"GODEBUG=" + Setting}, true},
		{"the operator's schedtrace stands", []string{"GODEBUG=schedtrace=0"}, []string{"GODEBUG=schedtrace=0"}, false},
		{"schedtrace among others", []string{"X=1", "GODEBUG=gctrace=1, schedtrace=1000"}, []string{"X=1", "GODEBUG=gctrace=1, schedtrace=1000"}, false},
		{"a name that only starts like it", []string{"GODEBUG=schedtracex=1"}, []string{"GODEBUG=schedtracex=1," + Setting}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, changed := Env(tc.in)
			if changed != tc.changed || !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Env(%q) = %q, %v; want %q, %v", tc.in, got, changed, tc.want, tc.changed)
			}
		})
	}
}
