package credentials

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// The exported API is what the binary and the ext_proc service use, and
// nothing more: every exported name must be used by cmd/ or extproc/ (their
// tests included), so an API grown for a test alone fails here and belongs
// in export_test.go or credentialstest instead.
func TestExportedAPIIsWhatCmdAndExtprocUse(t *testing.T) {
	fset := token.NewFileSet()
	pkgs, err := parser.ParseDir(fset, ".", func(fi os.FileInfo) bool { return !strings.HasSuffix(fi.Name(), "_test.go") }, 0)
	if err != nil {
		t.Fatal(err)
	}
	var exported []string // names, and Type.Method for methods of exported types
	for _, f := range pkgs["credentials"].Files {
		for _, d := range f.Decls {
			switch d := d.(type) {
			case *ast.FuncDecl:
				if d.Recv == nil {
					if d.Name.IsExported() {
						exported = append(exported, d.Name.Name)
					}
					continue
				}
				recv := d.Recv.List[0].Type
				if st, ok := recv.(*ast.StarExpr); ok {
					recv = st.X
				}
				if id, ok := recv.(*ast.Ident); ok && id.IsExported() && d.Name.IsExported() {
					exported = append(exported, id.Name+"."+d.Name.Name)
				}
			case *ast.GenDecl:
				for _, s := range d.Specs {
					switch s := s.(type) {
					case *ast.TypeSpec:
						if s.Name.IsExported() {
							exported = append(exported, s.Name.Name)
						}
					case *ast.ValueSpec:
						for _, n := range s.Names {
							if n.IsExported() {
								exported = append(exported, n.Name)
							}
						}
					}
				}
			}
		}
	}
	var users strings.Builder
	for _, dir := range []string{"../../cmd", "../../extproc"} {
		err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") {
				return err
			}
			b, err := os.ReadFile(path)
			users.Write(b)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	var unused []string
	for _, name := range exported {
		pattern := `credentials\.` + name + `\b`
		if typ, method, ok := strings.Cut(name, "."); ok {
			_ = typ // a method is used when called on anything
			pattern = `\.` + method + `\(`
		}
		if !regexp.MustCompile(pattern).MatchString(users.String()) {
			unused = append(unused, name)
		}
	}
	sort.Strings(unused)
	if len(exported) < 20 {
		t.Fatalf("found only %d exported names: %v", len(exported), exported)
	}
	if len(unused) > 0 {
		t.Errorf("exported but used by neither cmd nor extproc: %v", unused)
	}
}
