// Package apicheck holds a package's exported API to what its users use:
// a test of the package names the directories of its users, and any
// exported name none of them mentions fails the test. It reads source
// text, not types, so it errs towards "used" (a method name called on
// anything counts) and never towards a false failure.
package apicheck

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// Exported lists the exported top-level names of the package in dir (its
// non-test files), and Type.Method for the exported methods of exported
// types.
func Exported(dir string) ([]string, string, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		return nil, "", err
	}
	fset := token.NewFileSet()
	var names []string
	var pkg string
	for _, p := range paths {
		if strings.HasSuffix(p, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, p, nil, 0)
		if err != nil {
			return nil, "", err
		}
		if pkg != "" && f.Name.Name != pkg {
			return nil, "", fmt.Errorf("%s: packages %s and %s", dir, pkg, f.Name.Name)
		}
		pkg = f.Name.Name
		for _, d := range f.Decls {
			names = append(names, declared(d)...)
		}
	}
	sort.Strings(names)
	return names, pkg, nil
}

func declared(d ast.Decl) []string {
	var out []string
	switch d := d.(type) {
	case *ast.FuncDecl:
		if !d.Name.IsExported() {
			return nil
		}
		if d.Recv == nil {
			return []string{d.Name.Name}
		}
		recv := d.Recv.List[0].Type
		if st, ok := recv.(*ast.StarExpr); ok {
			recv = st.X
		}
		if ix, ok := recv.(*ast.IndexExpr); ok {
			recv = ix.X
		}
		if id, ok := recv.(*ast.Ident); ok && id.IsExported() {
			out = append(out, id.Name+"."+d.Name.Name)
		}
	case *ast.GenDecl:
		for _, s := range d.Specs {
			switch s := s.(type) {
			case *ast.TypeSpec:
				if s.Name.IsExported() {
					out = append(out, s.Name.Name)
				}
			case *ast.ValueSpec:
				for _, n := range s.Names {
					if n.IsExported() {
						out = append(out, n.Name)
					}
				}
			}
		}
	}
	return out
}

// Unused returns the exported names of the package in dir that no Go file
// below users mentions (pkg.Name, or .Method( for a method). A directory
// of users that is dir or below it is read without dir's own files.
func Unused(dir string, users ...string) ([]string, error) {
	names, pkg, err := Exported(dir)
	if err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("%s exports nothing: is it the right directory?", dir)
	}
	self, _ := filepath.Abs(dir)
	var corpus strings.Builder
	for _, u := range users {
		err := filepath.WalkDir(u, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			abs, _ := filepath.Abs(path)
			if d.IsDir() {
				if abs == self || (strings.HasPrefix(d.Name(), ".") && path != u) {
					return filepath.SkipDir
				}
				return nil
			}
			if strings.HasSuffix(path, ".go") {
				b, err := os.ReadFile(path)
				corpus.Write(b)
				return err
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	text := corpus.String()
	var unused []string
	for _, n := range names {
		pattern := regexp.QuoteMeta(pkg) + `\.` + n + `\b`
		if _, method, ok := strings.Cut(n, "."); ok {
			pattern = `\.` + method + `\(`
		}
		if !regexp.MustCompile(pattern).MatchString(text) {
			unused = append(unused, n)
		}
	}
	return unused, nil
}

// LongFunctions lists the functions of shipped code under root longer than
// max lines, as "path:line name N lines": every .go file but tests, outside
// test-double folders (names ending in "test"), testdata and dot folders.
func LongFunctions(root string, max int) ([]string, error) {
	fset := token.NewFileSet()
	var long []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		switch {
		case err != nil:
			return err
		case d.IsDir() && p != root && (strings.HasSuffix(d.Name(), "test") || strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata"):
			return filepath.SkipDir
		case d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go"):
			return nil
		}
		f, err := parser.ParseFile(fset, p, nil, 0)
		if err != nil {
			return err
		}
		for _, decl := range f.Decls {
			if fd, ok := decl.(*ast.FuncDecl); ok && fd.Body != nil {
				start, end := fset.Position(fd.Pos()).Line, fset.Position(fd.End()).Line
				if n := end - start + 1; n > max {
					long = append(long, fmt.Sprintf("%s:%d %s %d lines", p, start, fd.Name.Name, n))
				}
			}
		}
		return nil
	})
	return long, err
}
