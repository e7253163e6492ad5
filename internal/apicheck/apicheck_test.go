package apicheck

import (
	"os"
	"path/filepath"
	"slices"
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
