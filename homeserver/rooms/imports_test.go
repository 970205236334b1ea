package rooms_test

import (
	"go/parser"
	"go/token"
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestImportsNoHTTP keeps rooms below the HTTP edge (doc.go): no echo,
// no net/http, not the homeserver package.
func TestImportsNoHTTP(t *testing.T) {
	forbidden := func(path string) bool {
		return path == "net/http" || strings.HasPrefix(path, "net/http/") ||
			strings.HasPrefix(path, "github.com/labstack/echo") ||
			path == "github.com/switchboard-chat/switchboard/homeserver"
	}
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), e.Name(), nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		checked++
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			if forbidden(path) {
				t.Errorf("%s imports %s", e.Name(), path)
			}
		}
	}
	if checked == 0 {
		t.Fatal("no source files found")
	}
}
