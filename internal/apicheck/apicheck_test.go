package apicheck

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func write(t *testing.T, path, text string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// A name its users mention is used; one only its own tests mention is not.
func TestUnusedFindsWhatOnlyThePackageUses(t *testing.T) {
	root := t.TempDir()
	write(t, filepath.Join(root, "lib", "lib.go"), `package lib
type T struct{}
func (T) Used() {}
func (T) Spare() {}
func New() T { return T{} }
func Helper() {}
const Limit = 1
`)
	write(t, filepath.Join(root, "lib", "lib_test.go"), `package lib
func use() { Helper(); _ = Limit; T{}.Spare() }
`)
	write(t, filepath.Join(root, "app", "main.go"), `package main
import "x/lib"
func main() { lib.New().Used(); var _ lib.T }
`)
	got, err := Unused(filepath.Join(root, "lib"), root)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"Helper", "Limit", "T.Spare"}; !slices.Equal(got, want) {
		t.Fatalf("unused %v, want %v", got, want)
	}
}

// No function of shipped code is over 80 lines (test files and the test
// doubles aside): a longer one is split into named steps.
func TestNoShippedFunctionIsOver80Lines(t *testing.T) {
	long, err := LongFunctions("../..", 80)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range long {
		t.Errorf("over 80 lines: %s", f)
	}
}

// The length check finds an 81-line function, and skips test files and
// test doubles.
func TestLongFunctionsFindsWhatIsLong(t *testing.T) {
	dir := t.TempDir()
	body := func(name string, lines int) string {
		return "func " + name + "() {\n" + strings.Repeat("\t_ = 1\n", lines-2) + "}\n"
	}
	for path, text := range map[string]string{
		"a/a.go":            "package a\n\n" + body("Long", 81) + body("Fine", 80),
		"a/a_test.go":       "package a\n\n" + body("LongTest", 200),
		"a/atest/double.go": "package atest\n\n" + body("LongDouble", 200),
		"a/testdata/x/x.go": "package x\n\n" + body("LongData", 200),
	} {
		write(t, filepath.Join(dir, path), text)
	}
	long, err := LongFunctions(dir, 80)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "a/a.go") + ":3 Long 81 lines"; len(long) != 1 || long[0] != want {
		t.Errorf("LongFunctions = %q, want [%q]", long, want)
	}
}
