// Package layout checks where things live in the root package: no SQL
// and no choice by database outside the store (internal/store), and files
// that read top-down, each using only files below it (docs/layout.md); it
// prints which root file uses which (go test -v ./internal/layout).
package layout

import (
	"fmt"
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

// layers lists the root package's non-test files from top to bottom: a
// file may use only files below it (docs/layout.md explains the layers).
// A new root file must be added where it belongs.
var layers = []string{
	// The public front: the constructor, Start and the poll loop.
	"batchhandler.go",
	"eventbus.go",
	"consumer.go",
	"sqlite_params.go",
	// The consume path, from a partition's poll down to one lease.
	"partition.go",
	"poll.go",
	"redelivery.go",
	"batch.go",
	"batchcall.go",
	"workers.go",
	"call.go",
	"attempt.go",
	"lease.go",
	"partition_current.go",
	// Operations: the public methods besides consuming, and the sequencer.
	"cleaner.go",
	"txlist.go",
	"txchecker.go",
	"transaction.go",
	"dispatch.go",
	"deadletter_filter.go",
	"deadletter.go",
	"seek.go",
	"lag.go",
	"stats.go",
	"services.go",
	"migrate.go",
	"sequencer.go",
	// Bus methods every layer above uses.
	"observe.go",
	"wakeup.go",
	"bounded.go",
	// The shared state: the EventBus struct, then the types of its fields
	// and the values they are built from.
	"bus.go",
	"hold.go",
	"invoke.go",
	"lease_state.go",
	"record.go",
	"routines.go",
	"options.go",
	"observer.go",
	"retry.go",
	"backoff.go",
	"errors.go",
}

// use is one root file's use of a name declared in another.
type use struct{ from, to, name string }

// rootUses type-checks the root package and returns its non-test files
// and, for each, the package-level names (and methods) of other root
// files it uses, resolved by the type checker.
func rootUses(t *testing.T) ([]string, []use) {
	fset, files := parseRoot(t)
	var list []*ast.File
	var names []string
	for name, f := range files {
		list = append(list, f)
		names = append(names, name)
	}
	sort.Strings(names)
	info := &types.Info{Uses: map[*ast.Ident]types.Object{}}
	conf := types.Config{Importer: importer.ForCompiler(fset, "source", nil), Error: func(error) {}}
	pkg, _ := conf.Check("github.com/dddbus/eventbus", fset, list, info)
	if pkg == nil {
		t.Fatal("type check failed")
	}
	seen := map[use]bool{}
	var uses []use
	for id, obj := range info.Uses {
		if obj == nil || obj.Pkg() != pkg || !obj.Pos().IsValid() {
			continue
		}
		// Only package-level names and methods: fields and locals belong
		// to the file that declares their type or function.
		if v, ok := obj.(*types.Var); ok && (v.IsField() || v.Parent() != pkg.Scope()) {
			continue
		}
		u := use{filepath.Base(fset.Position(id.Pos()).Filename), filepath.Base(fset.Position(obj.Pos()).Filename), id.Name}
		if u.from != u.to && !seen[u] {
			seen[u] = true
			uses = append(uses, u)
		}
	}
	sort.Slice(uses, func(i, j int) bool {
		a, b := uses[i], uses[j]
		if a.from != b.from {
			return a.from < b.from
		}
		if a.to != b.to {
			return a.to < b.to
		}
		return a.name < b.name
	})
	return names, uses
}

// graph is which file uses which (names are sorted within an edge).
func graph(uses []use) map[string]map[string][]string {
	g := map[string]map[string][]string{}
	for _, u := range uses {
		if g[u.from] == nil {
			g[u.from] = map[string][]string{}
		}
		g[u.from][u.to] = append(g[u.from][u.to], u.name)
	}
	return g
}

// checkLayers returns what breaks the layering of files in order: a file
// missing from order (or listed but absent), a use that runs up the
// order, two files that use each other, a cycle.
func checkLayers(order, files []string, uses []use) []string {
	var problems []string
	rank := map[string]int{}
	for i, name := range order {
		rank[name] = i
	}
	present := map[string]bool{}
	for _, name := range files {
		present[name] = true
		if _, ok := rank[name]; !ok {
			problems = append(problems, fmt.Sprintf("%s is not in layers (internal/layout/layout_test.go): add it below every file that uses it and above every file it uses", name))
		}
	}
	for _, name := range order {
		if !present[name] {
			problems = append(problems, fmt.Sprintf("%s is in layers but is no root file", name))
		}
	}
	g := graph(uses)
	froms := make([]string, 0, len(g))
	for from := range g {
		froms = append(froms, from)
	}
	sort.Strings(froms)
	for _, from := range froms {
		var tos []string
		for to := range g[from] {
			tos = append(tos, to)
		}
		sort.Strings(tos)
		for _, to := range tos {
			rf, okf := rank[from]
			rt, okt := rank[to]
			if okf && okt && rt < rf {
				problems = append(problems, fmt.Sprintf("%s uses %s, above it: %s", from, to, strings.Join(g[from][to], ", ")))
			}
			if g[to][from] != nil && from < to {
				problems = append(problems, fmt.Sprintf("%s and %s use each other: %s; %s", from, to, strings.Join(g[from][to], ", "), strings.Join(g[to][from], ", ")))
			}
		}
	}
	for _, c := range cycles(g, froms) {
		problems = append(problems, "cycle: "+strings.Join(c, " -> "))
	}
	return problems
}

// cycles returns the cycles of more than two files that a depth-first
// search closes (pairs are reported as such).
func cycles(g map[string]map[string][]string, froms []string) [][]string {
	const (
		unseen = iota
		onPath
		done
	)
	state := map[string]int{}
	var path []string
	var found [][]string
	var visit func(string)
	visit = func(n string) {
		state[n] = onPath
		path = append(path, n)
		var tos []string
		for to := range g[n] {
			tos = append(tos, to)
		}
		sort.Strings(tos)
		for _, to := range tos {
			switch state[to] {
			case onPath:
				i := len(path) - 1
				for path[i] != to {
					i--
				}
				if len(path)-i > 2 { // pairs are reported as such
					found = append(found, append(append([]string{}, path[i:]...), to))
				}
			case unseen:
				visit(to)
			}
		}
		path = path[:len(path)-1]
		state[n] = done
	}
	for _, n := range froms {
		if state[n] == unseen {
			visit(n)
		}
	}
	return found
}

// TestFileDependencies fails unless the root files read top-down: each
// uses only files below it in layers, no two use each other, no cycle. It
// logs which file uses which (go test -v ./internal/layout -run Dep).
func TestFileDependencies(t *testing.T) {
	files, uses := rootUses(t)
	g := graph(uses)
	rank := map[string]int{}
	for i, name := range layers {
		rank[name] = i
	}
	edges, mutual, up := 0, 0, 0
	for _, name := range files {
		var to []string
		for u := range g[name] {
			to = append(to, u)
			if g[u][name] != nil {
				mutual++
			}
			if rf, ok := rank[name]; ok && rank[u] < rf {
				up++
			}
		}
		sort.Strings(to)
		edges += len(to)
		t.Logf("%-22s -> %s", name, strings.Join(to, " "))
	}
	t.Logf("%d root files, %d file-to-file uses, %d pairs of files that use each other, %d uses up the layers", len(files), edges, mutual/2, up)
	for _, p := range checkLayers(layers, files, uses) {
		t.Error(p)
	}
}

// The layer check can fail: it finds each kind of problem in a sample.
func TestLayerCheckFindsSamples(t *testing.T) {
	order := []string{"top.go", "mid.go", "low.go", "gone.go"}
	files := []string{"top.go", "mid.go", "low.go", "new.go", "a.go", "b.go", "c.go"}
	uses := []use{
		{"top.go", "mid.go", "Run"},   // down: fine
		{"top.go", "low.go", "state"}, // down, skipping a layer: fine
		{"low.go", "mid.go", "helper"},
		{"mid.go", "low.go", "state"},
		{"a.go", "b.go", "x"}, {"b.go", "c.go", "y"}, {"c.go", "a.go", "z"},
	}
	got := strings.Join(checkLayers(order, files, uses), "\n")
	for _, want := range []string{
		"new.go is not in layers",
		"a.go is not in layers",
		"gone.go is in layers but is no root file",
		"low.go uses mid.go, above it: helper",
		"low.go and mid.go use each other: helper; state",
		"cycle: a.go -> b.go -> c.go -> a.go",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("not reported: %q\nin:\n%s", want, got)
		}
	}
	if strings.Contains(got, "top.go uses") {
		t.Errorf("a use down the layers reported:\n%s", got)
	}
	if p := checkLayers([]string{"top.go", "low.go"}, []string{"top.go", "low.go"}, uses[1:2]); len(p) != 0 {
		t.Errorf("clean sample reported: %v", p)
	}
}
