package sync

import (
	"go/build"
	"strings"
	"testing"
)

// TestImports keeps the sync package a leaf of the homeserver (doc.go): of
// ours it may import storage and internal/clock, never the homeserver
// package nor anything on the media side.
func TestImports(t *testing.T) {
	pkg, err := build.ImportDir(".", 0)
	if err != nil {
		t.Fatal(err)
	}
	const mod = "github.com/switchboard-chat/switchboard/"
	allowed := map[string]bool{
		mod + "homeserver/storage":             true,
		mod + "homeserver/storage/storagetest": true,
		mod + "internal/clock":                 true,
	}
	for _, imp := range append(append([]string{}, pkg.Imports...), pkg.TestImports...) {
		if strings.HasPrefix(imp, mod) && !allowed[imp] {
			t.Errorf("homeserver/sync imports %s", imp)
		}
	}
}
