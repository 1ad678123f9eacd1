package main

import (
	"bytes"
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// tourMarker precedes the README's fenced copy of main.go.
const tourMarker = "<!-- tour: example/tour/main.go -->"

// The README's tour is this program, byte for byte, so what readers paste
// is what this package's tests compile and run.
func TestReadmeQuotesTour(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile("main.go")
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := bytes.Cut(readme, []byte(tourMarker+"\n```go\n"))
	if !ok {
		t.Fatalf("README.md has no %q followed by a ```go block", tourMarker)
	}
	quoted, _, ok := bytes.Cut(after, []byte("\n```\n"))
	if !ok {
		t.Fatal("the README's tour block is not closed")
	}
	if got, want := string(quoted)+"\n", string(src); got != want {
		t.Fatalf("README.md's tour differs from example/tour/main.go; paste the file into the README.\n%s", firstDiff(got, want))
	}
}

func firstDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := range min(len(al), len(bl)) {
		if al[i] != bl[i] {
			return "line " + strconv.Itoa(i+1) + ":\nREADME:  " + al[i] + "\nmain.go: " + bl[i]
		}
	}
	return "README has " + strconv.Itoa(len(al)) + " lines, main.go " + strconv.Itoa(len(bl))
}

// The tour runs as written, in a fresh directory, twice (its database
// already exists the second time).
func TestTourRuns(t *testing.T) {
	t.Chdir(t.TempDir())
	for range 2 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		err := run(ctx)
		cancel()
		if err != nil {
			t.Fatalf("tour: %v", err)
		}
	}
}
