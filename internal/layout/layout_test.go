// Package layout checks where things live in the root package: no SQL
// and no choice by database outside the store (internal/store), and it
// prints which root file uses which (go test -v ./internal/layout).
package layout

import (
	"go/ast"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
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
// top-level declarations it uses, resolved by the type checker (go test
// -v ./internal/layout -run Dep), and how many of those uses run "up": to
// a file that itself uses the first one (a cycle between two files).
func TestFileDependencies(t *testing.T) {
	fset, files := parseRoot(t)
	var list []*ast.File
	fileOf := map[*ast.File]string{}
	for name, f := range files {
		list = append(list, f)
		fileOf[f] = name
	}
	info := &types.Info{Uses: map[*ast.Ident]types.Object{}}
	conf := types.Config{Importer: importer.ForCompiler(fset, "source", nil), Error: func(error) {}}
	pkg, _ := conf.Check("github.com/dddbus/eventbus", fset, list, info)
	if pkg == nil {
		t.Fatal("type check failed")
	}
	declFile := func(obj types.Object) string {
		if obj == nil || obj.Pkg() != pkg || !obj.Pos().IsValid() {
			return ""
		}
		return filepath.Base(fset.Position(obj.Pos()).Filename)
	}
	uses := map[string]map[string]bool{}
	for id, obj := range info.Uses {
		from := filepath.Base(fset.Position(id.Pos()).Filename)
		to := declFile(obj)
		if to == "" || to == from {
			continue
		}
		// Only package-level names and methods: fields and locals belong
		// to the file that declares their type or function.
		if v, ok := obj.(*types.Var); ok && (v.IsField() || v.Parent() != pkg.Scope()) {
			continue
		}
		if uses[from] == nil {
			uses[from] = map[string]bool{}
		}
		uses[from][to] = true
	}
	var names []string
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	edges, mutual := 0, 0
	for _, name := range names {
		var to []string
		for u := range uses[name] {
			to = append(to, u)
			if uses[u][name] {
				mutual++
			}
		}
		sort.Strings(to)
		edges += len(to)
		t.Logf("%-22s -> %s", name, strings.Join(to, " "))
	}
	t.Logf("%d root files, %d file-to-file uses, %d pairs of files that use each other", len(names), edges, mutual/2)
}
