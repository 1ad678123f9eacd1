// Package layout checks where things live in the root package: no SQL
// and no choice by database outside the store (internal/store), and it
// prints which root file uses which (go test -v ./internal/layout).
package layout

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// sqlText matches a string literal that holds a statement or a clause.
var sqlText = regexp.MustCompile(`(?i)\b(SELECT\s.+\sFROM|INSERT\s+INTO|UPDATE\s+\S+\s+SET|DELETE\s+FROM|CALL\s+\w+\(|CREATE\s+TABLE|WHERE\s+\w+\s*(=|<|>|IN\b))`)

// dialectNames are the database names a "switch" could choose by.
var dialectNames = map[string]bool{`"sqlite"`: true, `"mysql"`: true, `"postgres"`: true}

// dialectSwitchOK are the root files allowed to name databases in a case:
// migrate.go validates the *gorm.DB's dialect before handing its name on.
var dialectSwitchOK = map[string]bool{"migrate.go": true}

func parseRoot(t *testing.T) (*token.FileSet, map[string]*ast.File) {
	t.Helper()
	fset := token.NewFileSet()
	paths, err := filepath.Glob("../../*.go")
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]*ast.File{}
	for _, p := range paths {
		if strings.HasSuffix(p, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, p, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		files[filepath.Base(p)] = f
	}
	if len(files) < 10 {
		t.Fatalf("found %d root files: run from internal/layout", len(files))
	}
	return fset, files
}

// TestNoSQLOutsideStore fails on a root file that holds SQL text or
// chooses by database name.
func TestNoSQLOutsideStore(t *testing.T) {
	fset, files := parseRoot(t)
	for name, f := range files {
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.BasicLit:
				if n.Kind != token.STRING {
					return true
				}
				s, err := strconv.Unquote(n.Value)
				if err == nil && sqlText.MatchString(s) {
					t.Errorf("%s: SQL outside the store: %q", fset.Position(n.Pos()), s)
				}
			case *ast.CaseClause:
				for _, e := range n.List {
					if lit, ok := e.(*ast.BasicLit); ok && dialectNames[lit.Value] && !dialectSwitchOK[name] {
						t.Errorf("%s: chooses by database name %s outside the store", fset.Position(lit.Pos()), lit.Value)
					}
				}
			}
			return true
		})
	}
}

// The check can fail: it finds SQL and a database switch in a sample.
func TestNoSQLCheckFindsSamples(t *testing.T) {
	for _, s := range []string{"SELECT id FROM t", "UPDATE x SET a = 1", "DELETE FROM x WHERE id = ?", "CALL p(1)", "INSERT INTO t (a) VALUES (?)"} {
		if !sqlText.MatchString(s) {
			t.Errorf("not recognised as SQL: %q", s)
		}
	}
	for _, s := range []string{"eventbus: lease lost", "select a handler", "update the offset"} {
		if sqlText.MatchString(s) {
			t.Errorf("prose taken for SQL: %q", s)
		}
	}
}

// TestFileDependencies logs, for each root file, the root files whose
// top-level declarations it uses (go test -v ./internal/layout -run Dep).
func TestFileDependencies(t *testing.T) {
	_, files := parseRoot(t)
	declaredIn := map[string]string{} // top-level name (methods by name) -> file
	for name, f := range files {
		for _, d := range f.Decls {
			switch d := d.(type) {
			case *ast.FuncDecl:
				declaredIn[d.Name.Name] = name
			case *ast.GenDecl:
				for _, s := range d.Specs {
					switch s := s.(type) {
					case *ast.TypeSpec:
						declaredIn[s.Name.Name] = name
					case *ast.ValueSpec:
						for _, n := range s.Names {
							declaredIn[n.Name] = name
						}
					}
				}
			}
		}
	}
	var names []string
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	edges := 0
	for _, name := range names {
		uses := map[string]bool{}
		ast.Inspect(files[name], func(n ast.Node) bool {
			var id string
			switch n := n.(type) {
			case *ast.Ident:
				id = n.Name
			case *ast.SelectorExpr:
				id = n.Sel.Name
			}
			if in, ok := declaredIn[id]; ok && in != name {
				uses[in] = true
			}
			return true
		})
		var list []string
		for u := range uses {
			list = append(list, u)
		}
		sort.Strings(list)
		edges += len(list)
		t.Logf("%-22s -> %s", name, strings.Join(list, " "))
	}
	t.Logf("%d root files, %d file-to-file uses", len(names), edges)
}
