package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ocisigner/ocisigner/intercept"
)

// The CA Secret of docs/kubernetes.md, as its commands make it: the
// ocisigner lines run as written (in a temporary folder), and kubectl's
// --from-file=DIR, which makes a key of each file in DIR, would give the
// Secret exactly the keys the manifests mount (deploy/kubernetes/intercept,
// the chart's intercept.caSecret; deploy/kubernetes_intercept_test.go
// checks those names).
func TestDocsKubernetesCASecret(t *testing.T) {
	block := docBlock(t, "kubernetes.md", "## HTTPS interception", "sh tested")
	work := t.TempDir()
	env := map[string]string{"OCISIGNER_SYSTEM_ROOTS": testSystemRoots(t)}
	var secretDir string
	for _, line := range strings.Split(strings.TrimSpace(block), "\n") {
		args := strings.Fields(line)
		switch {
		case args[0] == "ocisigner":
			for i, a := range args {
				if strings.HasPrefix(a, "ocisigner-ca") {
					args[i] = filepath.Join(work, a)
				}
			}
			if code, _, errOut := runCmd(t, env, args[1:]...); code != exitOK {
				t.Fatalf("%s: exit %d %s", line, code, errOut)
			}
		case len(args) == 6 && strings.Join(args[:5], " ") == "kubectl create secret generic ocisigner-ca":
			dir, ok := strings.CutPrefix(args[5], "--from-file=")
			if !ok {
				t.Fatalf("docs/kubernetes.md: %q: want --from-file=DIR", line)
			}
			secretDir = filepath.Join(work, dir)
		default:
			t.Fatalf("docs/kubernetes.md: a line this test does not know: %q", line)
		}
	}
	entries, err := os.ReadDir(secretDir)
	if err != nil {
		t.Fatalf("the Secret's folder (--from-file): %v", err)
	}
	var keys []string
	for _, e := range entries {
		keys = append(keys, e.Name())
	}
	if want := []string{"ca-bundle.pem", intercept.KeyFileName, intercept.CertFileName}; !slices.Equal(keys, want) {
		t.Errorf("the Secret would hold %v, want %v", keys, want)
	}
}

// docBlock returns the body of the first code block fenced "```info" in
// the section of docs/doc under heading.
func docBlock(t *testing.T, doc, heading, info string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, "docs", doc))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(data), "\n"+heading+"\n")
	if !ok {
		t.Fatalf("docs/%s has no section %q", doc, heading)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	_, body, ok := strings.Cut(section, "```"+info+"\n")
	if !ok {
		t.Fatalf("docs/%s, %s: no ```%s block", doc, heading, info)
	}
	body, _, _ = strings.Cut(body, "```")
	return body
}
