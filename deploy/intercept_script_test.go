package deploy

import (
	"os/exec"
	"path/filepath"
	"testing"
)

// deploy/intercept-e2e.sh needs Docker and a real Envoy, which are not
// here: it is at least valid bash, and shellcheck-clean where shellcheck
// is installed (.ci/run installs neither Docker nor shellcheck).
func TestInterceptScriptParses(t *testing.T) {
	script := filepath.Join(absRepoRoot(t), "deploy", "intercept-e2e.sh")
	if out, err := exec.Command("bash", "-n", script).CombinedOutput(); err != nil {
		t.Fatalf("bash -n: %v\n%s", err, out)
	}
	if _, err := exec.LookPath("shellcheck"); err != nil {
		t.Log("shellcheck not installed: not run")
		return
	}
	if out, err := exec.Command("shellcheck", script).CombinedOutput(); err != nil {
		t.Fatalf("shellcheck: %v\n%s", err, out)
	}
}
