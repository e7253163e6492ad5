package deploy

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// repoRoot is the module root, relative to this package's directory (go test
// runs tests in the package directory).
const repoRoot = ".."

func readRepoFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, name))
	if err != nil {
		t.Fatalf("read %s: %v", name, err)
	}
	return string(b)
}

func absRepoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// problems collects the findings of one check so a check reports everything
// that is wrong at once.
type problems []string

func (p *problems) addf(format string, args ...any) { *p = append(*p, fmt.Sprintf(format, args...)) }

func (p problems) err() error {
	if len(p) == 0 {
		return nil
	}
	return errors.New(strings.Join(p, "; "))
}

// A mutation is a regression applied to a file's text. The mutation tests
// prove that the named check (or, with want == "", loading the file at all)
// fails on the regressed file: every assertion here has teeth.
type mutation struct {
	name  string
	apply func(string) (string, error)
	want  string // name of the check that must fail; "" = the file must not load
}

// replaceNth replaces the n-th (1-based) occurrence of old; n < 0 counts from
// the end. It fails if there is no such occurrence, so a mutation cannot go
// stale silently when the file changes.
func replaceNth(old, repl string, n int) func(string) (string, error) {
	return func(s string) (string, error) {
		var idx []int
		for off := 0; ; {
			i := strings.Index(s[off:], old)
			if i < 0 {
				break
			}
			idx = append(idx, off+i)
			off += i + len(old)
		}
		k := n - 1
		if n < 0 {
			k = len(idx) + n
		}
		if k < 0 || k >= len(idx) {
			return "", fmt.Errorf("occurrence %d of %q not found (%d present)", n, old, len(idx))
		}
		return s[:idx[k]] + repl + s[idx[k]+len(old):], nil
	}
}

func replaceFirst(old, repl string) func(string) (string, error) { return replaceNth(old, repl, 1) }
func replaceLast(old, repl string) func(string) (string, error)  { return replaceNth(old, repl, -1) }

// namedCheck is one assertion over a parsed file.
type namedCheck[T any] struct {
	name string
	fn   func(T) error
}

// runChecks runs every check and returns the names of those that failed.
func runChecks[T any](t *testing.T, checks []namedCheck[T], v T, report bool) map[string]error {
	t.Helper()
	failed := map[string]error{}
	for _, c := range checks {
		if err := c.fn(v); err != nil {
			failed[c.name] = err
			if report {
				t.Errorf("%s: %v", c.name, err)
			}
		}
	}
	return failed
}

func checkNamesUnique[T any](t *testing.T, checks []namedCheck[T]) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	for _, c := range checks {
		if names[c.name] {
			t.Fatalf("duplicate check name %q", c.name)
		}
		names[c.name] = true
	}
	return names
}
