package signertest

import (
	"testing"

	"github.com/ocisigner/ocisigner/internal/apicheck"
)

// The stand-in exports what tests outside it use, and no more: a knob only
// its own tests turn stays unexported, so the double does not outgrow the
// product it fakes.
func TestExportsAreWhatOtherTestsUse(t *testing.T) {
	unused, err := apicheck.Unused(".", "../..")
	if err != nil {
		t.Fatal(err)
	}
	if len(unused) > 0 {
		t.Errorf("exported but used by no test outside signertest: %v", unused)
	}
}
