package deploy

import (
	"errors"
	"fmt"
	"maps"
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

// A fileMutation regresses one file of a set.
type fileMutation struct {
	file string
	mutation
}

// inFile places mutations of a single file in that file.
func inFile(file string, ms []mutation) []fileMutation {
	out := make([]fileMutation, len(ms))
	for i, m := range ms {
		out[i] = fileMutation{file, m}
	}
	return out
}

// mutationProof is how a deploy file's checks prove they have teeth.
type mutationProof struct {
	files     map[string]string // the files as they are, by path
	mutations []fileMutation
	known     map[string]bool // every check a mutation may name
	mustProve map[string]bool // the checks that each need a mutation; nil means known
	// load parses files and runs the checks, returning those that failed; an error is a
	// file that does not load.
	load func(t *testing.T, files map[string]string) (map[string]error, error)
	// serial keeps the mutations from running in parallel (load sets the environment).
	serial bool
}

// run requires the checks to pass on the files as they are; then applies each mutation
// and requires the check it names (or, for want == "", the load) to fail; and requires
// every check to be named by some mutation, since a check that no regression can make
// fail proves nothing.
func (p mutationProof) run(t *testing.T) {
	t.Helper()
	if failed, err := p.load(t, p.files); err != nil || len(failed) > 0 {
		t.Fatalf("unmodified files: load error %v, failed checks %v", err, failed)
	}
	covered := map[string]bool{}
	ran := 0
	for _, m := range p.mutations {
		if m.want != "" && !p.known[m.want] {
			t.Fatalf("mutation %q names unknown check %q", m.name, m.want)
		}
		if underRace && covered[m.want] {
			continue // proved already; all of them run without -race
		}
		covered[m.want] = true
		ran++
		t.Run(m.name, func(t *testing.T) {
			if !p.serial {
				t.Parallel()
			}
			text, ok := p.files[m.file]
			if !ok {
				t.Fatalf("no file %s", m.file)
			}
			mutated, err := m.apply(text)
			if err != nil {
				t.Fatalf("mutation no longer applies to %s: %v", m.file, err)
			}
			files := maps.Clone(p.files)
			files[m.file] = mutated
			failed, err := p.load(t, files)
			switch {
			case m.want == "" && err == nil:
				t.Fatalf("mutated %s still loads", m.file)
			case m.want == "":
				t.Logf("refused: %v", err)
			case err != nil:
				t.Fatalf("mutated %s should load (only check %q should fail): %v", m.file, m.want, err)
			case failed[m.want] == nil:
				t.Errorf("check %q did not catch the regression (failed: %v)", m.want, failed)
			default:
				t.Logf("caught: %v", failed[m.want])
			}
		})
	}
	mustProve := p.mustProve
	if mustProve == nil {
		mustProve = p.known
	}
	for n := range mustProve {
		if !covered[n] {
			t.Errorf("check %q has no mutation proving it can fail", n)
		}
	}
	t.Logf("%d of %d mutations run (race detector: %v)", ran, len(p.mutations), underRace)
}
