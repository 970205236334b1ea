package turn

import (
	"go/build"
	"strings"
	"testing"
)

// TestImportsNothingOfOurs keeps turn at the bottom of the import graph
// (DESIGN.md, import rules): it takes sockets, config and callbacks from
// the caller and imports no other Switchboard package.
func TestImportsNothingOfOurs(t *testing.T) {
	pkg, err := build.ImportDir(".", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, imp := range append(append([]string{}, pkg.Imports...), pkg.TestImports...) {
		if strings.HasPrefix(imp, "github.com/switchboard-chat/switchboard") {
			t.Errorf("turn imports %s", imp)
		}
	}
}
