package authres

import "testing"

func TestResults(t *testing.T) {
	var r Results
	if r.AnyDKIMPass() || r.SPF != nil || r.DMARC != nil {
		t.Fatal("zero Results must say nothing ran")
	}
	r.DKIM = []DKIMResult{{Domain: "a.example", Result: "fail"}, {Domain: "b.example", Result: "pass"}}
	if !r.AnyDKIMPass() {
		t.Fatal("a passing signature not seen")
	}
	if (SPFResult{Result: "softfail"}).Pass() || !(SPFResult{Result: "pass"}).Pass() {
		t.Fatal("SPFResult.Pass")
	}
	if (DMARCResult{}).Pass() || !(DMARCResult{DKIMAligned: true}).Pass() {
		t.Fatal("DMARCResult.Pass")
	}
	if Strict.String() != "s" || Relaxed.String() != "r" {
		t.Fatal("Mode.String")
	}
}
