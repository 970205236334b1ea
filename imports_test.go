// Package switchboard_test holds the tests of the whole module's shape: the
// import rules of DESIGN.md ("The house", "Import rules") as one table, and a
// doc comment on every package. It has no non-test code.
package switchboard_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// verdict says whether a rule lets an import through.
type verdict bool

const (
	allow verdict = true
	deny  verdict = false
)

// importRule is one row of the house's import table. from and to are
// package patterns: a path relative to the module root ("sfu", matching that
// package alone), a subtree ("homeserver/...", the package and everything
// below it), one of the groups below (ours, program, tools, kits, shared),
// or a full import path outside the module ("net/http/...").
type importRule struct {
	from, to string
	verdict  verdict
	why      string
}

// Groups of packages that rules name.
const (
	// ours is every package of this module.
	ours = "ours"
	// program is the packages that make up the switchboard binary.
	program = "program"
	// tools is the benchmarks, load tests and end-to-end tests: programs and
	// packages that drive the binary from outside and may import anything.
	tools = "tools"
	// kits is the test kits (internal/testkit/..., internal/testbin, and every
	// package whose name ends in "test", as storagetest or Go's httptest):
	// helpers for tests and tools, never for the program.
	kits = "kits"
	// shared is the packages below internal/ that are not test kits: small
	// leaf libraries (a clock, say) that homeserver, signalling and cmd may
	// share. They import no package of ours.
	shared = "shared"
)

var (
	programRoots = []string{"cmd/...", "homeserver/...", "signalling/...", "sfu/...", "media/...", "turn/...", "web/..."}
	toolRoots    = []string{"bench/...", "loadtest/...", "tests/..."}
)

// houseRules is the import graph DESIGN.md draws. An import of one of our
// packages is decided by the first row whose from and to both match it, and
// is refused when no row matches (so a new top-level package needs a row
// before it may import anything of ours). An import from outside the module
// is refused only by a deny row that names it. The rules hold for the
// imports of non-test files; test files may in addition import test kits.
var houseRules = []importRule{
	{program, kits, deny, "test kits serve tests and tools, never the program"},
	{program, tools, deny, "the program never imports its benchmarks, load tests or end-to-end tests"},

	// The media path sits at the bottom and knows nothing of Matrix.
	{"media/...", ours, deny, "media imports no package of ours"},
	{"sfu/...", "media/...", allow, ""},
	{"sfu/...", ours, deny, "sfu imports media only"},
	{"turn/...", ours, deny, "turn imports no package of ours"},
	{"web/...", ours, deny, "web is the embedded browser client and imports no package of ours"},
	{shared, ours, deny, "a shared package below internal/ is a leaf: it imports no package of ours"},

	// Inside the homeserver.
	{"homeserver/rooms/...", "net/http/...", deny, "homeserver/rooms imports no HTTP"},
	{"homeserver/rooms/...", "github.com/labstack/echo/...", deny, "homeserver/rooms imports no HTTP"},
	{"homeserver/push/...", "github.com/labstack/echo/...", deny, "homeserver/push serves no routes: the client API does"},
	{"homeserver/federation/...", "homeserver/clientapi/...", deny, "federation and clientapi never import each other: each defines the small interfaces it needs"},
	{"homeserver/clientapi/...", "homeserver/federation/...", deny, "federation and clientapi never import each other: each defines the small interfaces it needs"},
	{"homeserver/federation/...", "homeserver", deny, "federation never imports the homeserver package: it defines the interfaces it needs (Local, Ephemeral, Positions)"},
	{"homeserver/federation/...", "homeserver/sync/...", deny, "federation never imports homeserver/sync: presence and positions come through its own interfaces"},
	{"homeserver/...", "homeserver/...", allow, ""},
	{"homeserver/...", shared, allow, ""},
	{"homeserver/...", ours, deny, "homeserver never imports sfu, media, signalling, turn, web or cmd"},

	// Calls on top of Matrix: the one bridge between homeserver and sfu.
	{"signalling/...", "homeserver/...", allow, ""},
	{"signalling/...", "sfu/...", allow, ""},
	{"signalling/...", "media/...", allow, ""},
	{"signalling/...", "signalling/...", allow, ""},
	{"signalling/...", shared, allow, ""},
	{"signalling/...", ours, deny, "signalling imports homeserver, sfu and media only"},

	// cmd/switchboard is the one place that wires everything; the tools drive
	// it from outside; test kits may lean on what they test.
	{"cmd/...", program, allow, ""},
	{"cmd/...", shared, allow, ""},
	{tools, ours, allow, ""},
	{kits, ours, allow, ""},
}

// pkgInfo is what the checker needs of one package.
type pkgInfo struct {
	path        string   // relative to the module root; "" is the root
	doc         string   // package doc comment
	goFiles     int      // non-test Go files
	imports     []string // of non-test files: relative for ours, full for others
	testImports []string // of test files (in-package and _test package)
	deps        []string // ours, transitively, of non-test files
}

// violation is one import the rules refuse.
type violation struct {
	from, to string
	test     bool
	why      string
}

func (v violation) String() string {
	kind := "imports"
	if v.test {
		kind = "imports in a test file"
	}
	return fmt.Sprintf("%s %s %s: %s", v.from, kind, v.to, v.why)
}

// match reports whether the package p (ours when isOurs) matches pattern.
func match(pattern, p string, isOurs bool) bool {
	switch pattern {
	case ours:
		return isOurs
	case program:
		return isOurs && matchAny(programRoots, p) && !isKit(p)
	case tools:
		return isOurs && matchAny(toolRoots, p) && !isKit(p)
	case kits:
		return isOurs && isKit(p)
	case shared:
		return isOurs && match("internal/...", p, true) && !isKit(p)
	}
	if base, ok := strings.CutSuffix(pattern, "/..."); ok {
		return p == base || strings.HasPrefix(p, base+"/")
	}
	return p == pattern
}

func matchAny(patterns []string, p string) bool {
	for _, pat := range patterns {
		if match(pat, p, true) {
			return true
		}
	}
	return false
}

// isKit reports whether our package p is a test kit.
func isKit(p string) bool {
	last := p[strings.LastIndex(p, "/")+1:]
	return match("internal/testkit/...", p, true) || p == "internal/testbin" || strings.HasSuffix(last, "test")
}

// decide returns the verdict on from importing to, and the reason of a
// refusal.
func decide(from, to string, toOurs bool) (verdict, string) {
	for _, r := range houseRules {
		if match(r.from, from, true) && match(r.to, to, toOurs) {
			return r.verdict, r.why
		}
	}
	if !toOurs {
		return allow, ""
	}
	return deny, "no row of houseRules allows it (add one, in line with DESIGN.md)"
}

// internalOK applies Go's rule for internal directories to our packages (the
// compiler does too; saying it here keeps the table honest): a package below
// x/internal is for x and its subtree, never a sibling's.
func internalOK(from, to string) bool {
	elems := strings.Split(to, "/")
	for i, e := range elems {
		if e == "internal" {
			parent := strings.Join(elems[:i], "/")
			return parent == "" || from == parent || strings.HasPrefix(from, parent+"/")
		}
	}
	return true
}

// check returns every import in pkgs that the house forbids.
func check(pkgs []pkgInfo) []violation {
	known := map[string]bool{}
	for _, p := range pkgs {
		known[p.path] = true
	}
	var out []violation
	one := func(from, to string, test bool) {
		if to == from {
			return // a _test package importing the package it tests
		}
		toOurs := known[to]
		if toOurs && !internalOK(from, to) {
			out = append(out, violation{from, to, test, "a package below internal/ is for its parent's subtree only"})
			return
		}
		if test && toOurs && isKit(to) {
			return
		}
		if v, why := decide(from, to, toOurs); v == deny {
			out = append(out, violation{from, to, test, why})
		}
	}
	for _, p := range pkgs {
		for _, imp := range p.imports {
			one(p.path, imp, false)
		}
		for _, imp := range p.testImports {
			one(p.path, imp, true)
		}
		// signalling is the only bridge between homeserver and sfu: no other
		// package but the wiring, the tools and the kits may reach both, even
		// through others.
		if !slices.ContainsFunc([]string{"signalling/...", "cmd/...", tools, kits}, func(pat string) bool { return match(pat, p.path, true) }) {
			reach := append([]string{p.path}, p.deps...)
			hs := slices.IndexFunc(reach, func(d string) bool { return match("homeserver/...", d, true) })
			sfu := slices.IndexFunc(reach, func(d string) bool { return match("sfu/...", d, true) })
			if hs >= 0 && sfu >= 0 {
				out = append(out, violation{p.path, reach[hs] + " and " + reach[sfu], false, "only signalling bridges homeserver and sfu"})
			}
		}
	}
	return out
}

// goListPackage is the part of `go list -json` output this file reads.
type goListPackage struct {
	ImportPath   string
	Doc          string
	GoFiles      []string
	Imports      []string
	Deps         []string
	TestImports  []string
	XTestImports []string
	Module       *struct{ Path string }
	Error        *struct{ Err string }
}

// listModule runs `go list -e -json ./...` from the module root with the go
// command of this test (`go test` puts its GOROOT/bin first on PATH), once
// per test process. It reads the source only; nothing is compiled.
func listModule(t *testing.T) []pkgInfo {
	t.Helper()
	listOnce.Do(func() { listed, listProblems, listErr = runGoList() })
	if listErr != nil {
		t.Fatal(listErr)
	}
	for _, p := range listProblems {
		// An import cycle is such a problem; go on, so that the rule it
		// breaks is named as well.
		t.Error(p)
	}
	return listed
}

var (
	listOnce     sync.Once
	listed       []pkgInfo
	listProblems []string
	listErr      error
)

func runGoList() ([]pkgInfo, []string, error) {
	goCmd, err := exec.LookPath("go")
	if err != nil {
		return nil, nil, fmt.Errorf("no go command on PATH: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goCmd, "list", "-e", "-json", "./...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, nil, fmt.Errorf("go list: %w\n%s", err, stderr.String())
	}
	var raw []goListPackage
	var problems []string
	for dec := json.NewDecoder(bytes.NewReader(out)); ; {
		var l goListPackage
		if err := dec.Decode(&l); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, nil, fmt.Errorf("go list output: %w", err)
		}
		if l.Error != nil {
			problems = append(problems, fmt.Sprintf("go list %s: %s", l.ImportPath, l.Error.Err))
		}
		raw = append(raw, l)
	}
	if len(raw) == 0 || raw[0].Module == nil {
		return nil, nil, errors.New("go list found no packages of a module")
	}
	mod := raw[0].Module.Path
	rel := func(p string) (string, bool) {
		if p == mod {
			return "", true
		}
		return strings.CutPrefix(p, mod+"/")
	}
	var pkgs []pkgInfo
	for _, l := range raw {
		p := pkgInfo{doc: l.Doc, goFiles: len(l.GoFiles)}
		p.path, _ = rel(l.ImportPath)
		for _, imp := range l.Imports {
			r, _ := rel(imp)
			p.imports = append(p.imports, r)
		}
		for _, imp := range append(slices.Clone(l.TestImports), l.XTestImports...) {
			r, _ := rel(imp)
			p.testImports = append(p.testImports, r)
		}
		for _, d := range l.Deps {
			if r, ok := rel(d); ok {
				p.deps = append(p.deps, r)
			}
		}
		pkgs = append(pkgs, p)
	}
	return pkgs, problems, nil
}

// TestImportRules holds every package of the module to houseRules.
func TestImportRules(t *testing.T) {
	pkgs := listModule(t)
	for _, want := range []string{"media", "sfu", "turn", "homeserver", "signalling", "cmd/switchboard"} {
		if !slices.ContainsFunc(pkgs, func(p pkgInfo) bool { return p.path == want }) {
			t.Errorf("go list did not list %s: the rules would hold vacuously", want)
		}
	}
	for _, v := range check(pkgs) {
		t.Error(v)
	}
}

// TestPackageDocs wants a doc comment on every package with non-test files
// (STYLE.md 14).
func TestPackageDocs(t *testing.T) {
	for _, p := range listModule(t) {
		if p.goFiles > 0 && strings.TrimSpace(p.doc) == "" {
			t.Errorf("package %q has no doc comment", p.path)
		}
	}
}

// TestImportRulesRefuse runs the checker on made-up graphs, so that a rule
// that stopped refusing would show here and not only when someone breaks it.
func TestImportRulesRefuse(t *testing.T) {
	base := []pkgInfo{
		{path: "media"}, {path: "sfu"}, {path: "turn"}, {path: "web"},
		{path: "homeserver"}, {path: "homeserver/storage"}, {path: "homeserver/storage/storagetest"},
		{path: "homeserver/rooms"}, {path: "homeserver/sync"}, {path: "homeserver/federation"},
		{path: "homeserver/clientapi"}, {path: "homeserver/federation/internal/wire"},
		{path: "signalling"}, {path: "signalling/livekit"}, {path: "cmd/switchboard"},
		{path: "internal/testkit"}, {path: "internal/testkit/rtcclient"}, {path: "internal/testbin"},
		{path: "bench/calls"}, {path: "tests/e2e"}, {path: "loadtest/sync"}, {path: "newtop"}, {path: "internal/clock"},
	}
	for _, tc := range []struct {
		name       string
		from       string
		imports    []string
		test       []string
		deps       []string
		violations int
	}{
		{name: "media imports sfu", from: "media", imports: []string{"sfu"}, violations: 1},
		{name: "media imports pion", from: "media", imports: []string{"github.com/pion/rtp"}},
		{name: "sfu imports media", from: "sfu", imports: []string{"media"}},
		{name: "sfu imports homeserver", from: "sfu", imports: []string{"homeserver"}, violations: 1},
		{name: "sfu imports a test kit", from: "sfu", imports: []string{"internal/testkit/rtcclient"}, violations: 1},
		{name: "sfu test imports a test kit", from: "sfu", test: []string{"internal/testkit/rtcclient", "internal/testkit"}},
		{name: "sfu test imports homeserver", from: "sfu", test: []string{"homeserver"}, violations: 1},
		{name: "turn imports media", from: "turn", imports: []string{"media"}, violations: 1},
		{name: "web imports homeserver", from: "web", imports: []string{"homeserver"}, violations: 1},
		{name: "homeserver imports storage", from: "homeserver", imports: []string{"homeserver/storage", "homeserver/rooms"}},
		{name: "homeserver imports sfu", from: "homeserver", imports: []string{"sfu"}, violations: 1},
		{name: "homeserver/sync imports signalling", from: "homeserver/sync", imports: []string{"signalling"}, violations: 1},
		{name: "homeserver imports cmd", from: "homeserver", imports: []string{"cmd/switchboard"}, violations: 1},
		{name: "homeserver imports storagetest", from: "homeserver", imports: []string{"homeserver/storage/storagetest"}, violations: 1},
		{name: "homeserver test imports storagetest", from: "homeserver", test: []string{"homeserver/storage/storagetest"}},
		{name: "rooms imports net/http", from: "homeserver/rooms", imports: []string{"net/http", "net/http/httptest", "github.com/labstack/echo/v4"}, violations: 3},
		{name: "rooms imports net/url", from: "homeserver/rooms", imports: []string{"net/url"}},
		{name: "federation imports clientapi", from: "homeserver/federation", imports: []string{"homeserver/clientapi"}, violations: 1},
		{name: "clientapi imports federation", from: "homeserver/clientapi", imports: []string{"homeserver/federation"}, violations: 1},
		{name: "clientapi imports rooms", from: "homeserver/clientapi", imports: []string{"homeserver/rooms", "homeserver/sync"}},
		{name: "clientapi imports federation's internals", from: "homeserver/clientapi", imports: []string{"homeserver/federation/internal/wire"}, violations: 1},
		{name: "federation imports its internals", from: "homeserver/federation", imports: []string{"homeserver/federation/internal/wire"}},
		{name: "signalling bridges", from: "signalling", imports: []string{"homeserver", "sfu", "signalling/livekit"}},
		{name: "signalling imports turn", from: "signalling", imports: []string{"turn"}, violations: 1},
		{name: "livekit imports sfu", from: "signalling/livekit", imports: []string{"sfu"}},
		{name: "cmd wires everything", from: "cmd/switchboard", imports: []string{"homeserver", "sfu", "signalling", "turn", "web", "signalling/livekit"}},
		{name: "cmd imports a test kit", from: "cmd/switchboard", imports: []string{"internal/testbin"}, violations: 1},
		{name: "cmd imports the e2e tests", from: "cmd/switchboard", imports: []string{"tests/e2e"}, violations: 1},
		{name: "a tool imports anything", from: "bench/calls", imports: []string{"sfu", "tests/e2e", "internal/testbin", "internal/testkit/rtcclient"}},
		{name: "homeserver imports a shared leaf", from: "homeserver/sync", imports: []string{"internal/clock"}},
		{name: "signalling and cmd import a shared leaf", from: "cmd/switchboard", imports: []string{"internal/clock", "signalling"}},
		{name: "sfu imports a shared leaf", from: "sfu", imports: []string{"internal/clock"}, violations: 1},
		{name: "a shared leaf imports homeserver", from: "internal/clock", imports: []string{"homeserver/storage"}, violations: 1},
		{name: "a shared leaf imports a kit", from: "internal/clock", imports: []string{"internal/testkit"}, violations: 1},
		{name: "a new top-level package", from: "newtop", imports: []string{"homeserver"}, violations: 1},
		{name: "a new package reaches both sides", from: "newtop", deps: []string{"homeserver", "sfu"}, violations: 1},
		{name: "a new homeserver package reaches sfu", from: "homeserver/sync", deps: []string{"homeserver/storage", "sfu", "media"}, violations: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pkgs := slices.Clone(base)
			i := slices.IndexFunc(pkgs, func(p pkgInfo) bool { return p.path == tc.from })
			pkgs[i].imports, pkgs[i].testImports, pkgs[i].deps = tc.imports, tc.test, tc.deps
			got := check(pkgs)
			if len(got) != tc.violations {
				t.Errorf("%d violations, want %d: %v", len(got), tc.violations, got)
			}
		})
	}
}
