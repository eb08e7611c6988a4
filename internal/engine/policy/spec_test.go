package policy

import (
	"reflect"
	"testing"
)

func TestSuggest(t *testing.T) {
	names := []string{"dmarc_reject", "dmarc_quarantine", "dmarc_unaligned", "dmarc_no_record"}
	tests := []struct{ in, want string }{
		{"dmarc_rejct", "dmarc_reject"},
		{"DMARC_REJECT", "dmarc_reject"},
		{"dmarc_quarantien", "dmarc_quarantine"},
		{"dmarc_norecord", "dmarc_no_record"},
		{"spf_fail", ""},
		{"x", ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := Suggest(tt.in, names); got != tt.want {
				t.Fatalf("Suggest(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestCheckChain(t *testing.T) {
	specs := SpecIndex([]Spec{
		{Name: "spf"}, {Name: "dkim"},
		{Name: "dmarc", Needs: []string{"spf", "dkim"}},
		{Name: "stamp", AddsHeaders: true},
		{Name: "sign", AddsHeaders: true, SignsHeaders: true},
	})
	tests := []struct {
		name  string
		chain []string
		want  []int // indexes of the problems
	}{
		{"good", []string{"spf", "dkim", "dmarc", "stamp", "sign"}, nil},
		{"unknown names are left alone", []string{"nosuch", "spf", "dkim", "dmarc"}, nil},
		{"needs after", []string{"dmarc", "dkim", "spf"}, []int{0, 0}},
		{"needs missing", []string{"spf", "dmarc"}, []int{1}},
		{"adds after signing", []string{"sign", "stamp"}, []int{1}},
		{"sign alone", []string{"sign"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []int
			for _, p := range CheckChain(tt.chain, specs) {
				if p.Msg == "" {
					t.Errorf("problem at %d without a message", p.Index)
				}
				got = append(got, p.Index)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("problems at %v, want %v", got, tt.want)
			}
		})
	}
}
