package signer_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Package signer is pure signing: request in, headers out. It opens no
// files, talks to no network and starts no goroutines; credentials (files,
// services, refreshes) are package credentials' business. This checks the
// shape from the source and from go list.
func TestSignerIsPure(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	forbidden := map[string]bool{"os": true, "io/fs": true, "path/filepath": true, "net": true, "net/http": true,
		"net/url": true, "crypto/tls": true, "os/exec": true, "os/signal": true, "syscall": true}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			if path := strings.Trim(imp.Path.Value, `"`); forbidden[path] {
				t.Errorf("%s imports %s", name, path)
			}
		}
		full, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(full, func(n ast.Node) bool {
			if g, ok := n.(*ast.GoStmt); ok {
				t.Errorf("%s starts a goroutine", fset.Position(g.Pos()))
			}
			return true
		})
	}
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	// crypto/x509 brings net and net/url along for IP and URI names in
	// certificates; nothing that opens a connection or serves one may come.
	for _, dep := range strings.Fields(string(out)) {
		switch dep {
		case "net/http", "crypto/tls", "net/rpc", "net/smtp", "os/exec", "os/signal", "net/http/httptrace", "github.com/ocisigner/ocisigner/signer/credentials":
			t.Errorf("signer depends on %s", dep)
		}
	}
}
