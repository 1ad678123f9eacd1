package eventbus

import (
	"fmt"
	"testing"

	"github.com/dddbus/eventbus/internal/store"
)

func rowsOwned(n int, owners ...string) []store.PartitionState {
	rows := make([]store.PartitionState, n)
	for p := range rows {
		rows[p] = store.PartitionState{Name: fmt.Sprintf("s#%d/%d", p, n), Part: p}
		if p < len(owners) {
			rows[p].Owner = owners[p]
		}
	}
	return rows
}

func count(a map[string]map[string]bool) map[string]int {
	out := map[string]int{}
	for m, rows := range a {
		out[m] = len(rows)
	}
	return out
}

// Every partition goes to exactly one member, shares differ by one at most,
// and a join or leave moves only what the new shares need.
func TestAssignEvenAndSticky(t *testing.T) {
	check := func(a map[string]map[string]bool, n int) {
		t.Helper()
		seen := map[string]bool{}
		lo, hi := n, 0
		for _, rows := range a {
			lo, hi = min(lo, len(rows)), max(hi, len(rows))
			for r := range rows {
				if seen[r] {
					t.Fatalf("%s assigned twice: %v", r, a)
				}
				seen[r] = true
			}
		}
		if len(seen) != n || hi-lo > 1 {
			t.Fatalf("assignment %v of %d partitions", count(a), n)
		}
	}
	// From nothing: even.
	a := assign(rowsOwned(6), []string{"a", "b", "c"})
	check(a, 6)
	// a held everything; b joins: a keeps 0..2, b gets 3..5 (3 moves, the minimum).
	a = assign(rowsOwned(6, "a", "a", "a", "a", "a", "a"), []string{"a", "b"})
	check(a, 6)
	for p := range 3 {
		if !a["a"][fmt.Sprintf("s#%d/6", p)] {
			t.Fatalf("a lost partition %d: %v", p, a)
		}
	}
	// a and b hold 3 each; c joins: each gives up one (2 moves).
	a = assign(rowsOwned(6, "a", "a", "a", "b", "b", "b"), []string{"a", "b", "c"})
	check(a, 6)
	if !a["a"]["s#0/6"] || !a["a"]["s#1/6"] || !a["b"]["s#3/6"] || !a["b"]["s#4/6"] {
		t.Fatalf("join moved more than needed: %v", a)
	}
	// b leaves (not a member): its rows go to a and c, who keep theirs.
	a = assign(rowsOwned(6, "a", "a", "b", "b", "c", "c"), []string{"a", "c"})
	check(a, 6)
	if !a["a"]["s#0/6"] || !a["a"]["s#1/6"] || !a["c"]["s#4/6"] || !a["c"]["s#5/6"] {
		t.Fatalf("leave moved more than needed: %v", a)
	}
	// More members than partitions: some get none.
	check(assign(rowsOwned(2), []string{"a", "b", "c"}), 2)
}
