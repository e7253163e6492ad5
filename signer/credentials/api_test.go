package credentials

import (
	"testing"

	"github.com/ocisigner/ocisigner/internal/apicheck"
)

// The exported API is what the binary and the ext_proc service use, and
// nothing more: every exported name must be used by cmd/ or extproc/ (their
// tests included), so an API grown for a test alone fails here and belongs
// in export_test.go or credentialstest instead.
func TestExportedAPIIsWhatCmdAndExtprocUse(t *testing.T) {
	unused, err := apicheck.Unused(".", "../../cmd", "../../extproc")
	if err != nil {
		t.Fatal(err)
	}
	if len(unused) > 0 {
		t.Errorf("exported but used by neither cmd nor extproc: %v", unused)
	}
}
