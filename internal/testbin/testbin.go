// Package testbin hands tests the switchboard binary, built once per test
// run and never inside a test's deadline.
//
// `make test` builds bin/switchboard before any test starts and exports its
// absolute path as SWITCHBOARD_TEST_BINARY; every Go test (and the Node and
// browser tests) then runs that binary. Without the variable (a plain `go
// test ./tests/e2e/`), the first caller in a test process builds
// ./cmd/switchboard of this module into a temporary directory, with no time
// limit, and every later caller gets the same file. TestMain removes it with
// Cleanup.
//
// The result cache of `go test` keys on what a test reads: Path reads the
// variable and stats the binary (or, when it builds, every source file of
// the binary), so a cached pass is reused only while the server is
// unchanged.
package testbin

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// Env names a prebuilt switchboard binary (an absolute path is best: tests
// run the server in its own data directory).
const Env = "SWITCHBOARD_TEST_BINARY"

// ErrBuild is returned when the binary cannot be found or built.
var ErrBuild = errors.New("testbin: switchboard binary")

var (
	once     sync.Once
	builtDir string // temporary directory of a binary built here, for Cleanup
	bin      string
	binErr   error
)

// Path returns the absolute path of the switchboard binary: $Env when set,
// else one built from this module's source on the first call of the
// process. It is safe for concurrent use.
func Path() (string, error) {
	once.Do(func() { bin, binErr = resolve() })
	return bin, binErr
}

// Binary is Path for a test: it fails tb when there is no binary. Call it
// before starting any per-test deadline (a context or timer), so that a
// first, cold build is not counted against it.
func Binary(tb testing.TB) string {
	tb.Helper()
	p, err := Path()
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// Cleanup removes a binary that Path built. TestMain calls it after m.Run.
func Cleanup() {
	if builtDir != "" {
		_ = os.RemoveAll(builtDir)
	}
}

func resolve() (string, error) {
	if p := os.Getenv(Env); p != "" {
		abs, err := filepath.Abs(p)
		if err != nil {
			return "", fmt.Errorf("%w: %s: %w", ErrBuild, Env, err)
		}
		st, err := os.Stat(abs)
		if err != nil {
			return "", fmt.Errorf("%w: %s=%s: %w (run `make build`)", ErrBuild, Env, p, err)
		}
		if st.IsDir() || st.Mode()&0o111 == 0 {
			return "", fmt.Errorf("%w: %s=%s is not an executable file", ErrBuild, Env, p)
		}
		return abs, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrBuild, err)
	}
	root, err := ModuleRoot(wd)
	if err != nil {
		return "", err
	}
	files, err := sourceFiles(root)
	if err != nil {
		return "", err
	}
	for _, f := range files {
		_, _ = os.Stat(f) // recorded by go test's cache, see the package doc
	}
	dir, err := os.MkdirTemp("", "switchboard-testbin-*")
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrBuild, err)
	}
	builtDir = dir
	return Build(root, dir)
}

// ModuleRoot returns the directory holding the go.mod of the module that dir
// is in, walking up from dir.
func ModuleRoot(dir string) (string, error) {
	d, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrBuild, err)
	}
	for {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", fmt.Errorf("%w: no go.mod above %s", ErrBuild, dir)
		}
		d = parent
	}
}

// Build compiles ./cmd/switchboard of the module at root into
// outDir/switchboard as `make build` does (static, CGO_ENABLED=0) and
// returns the binary's absolute path. It has no time limit: a cold build on
// a small machine takes minutes.
func Build(root, outDir string) (string, error) {
	out, err := filepath.Abs(filepath.Join(outDir, "switchboard"))
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrBuild, err)
	}
	cmd := exec.Command(goTool(), "build", "-trimpath", "-o", out, "./cmd/switchboard")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("%w: go build ./cmd/switchboard: %w\n%s", ErrBuild, err, msg)
	}
	return out, nil
}

// sourceFiles lists the files of the main module that the binary is built
// from: Go files and embedded files of every package ./cmd/switchboard
// depends on.
func sourceFiles(root string) ([]string, error) {
	const format = `{{if .Module}}{{if .Module.Main}}{{$d := .Dir}}` +
		`{{range .GoFiles}}{{$d}}/{{.}}{{"\n"}}{{end}}` +
		`{{range .EmbedFiles}}{{$d}}/{{.}}{{"\n"}}{{end}}{{end}}{{end}}`
	cmd := exec.Command(goTool(), "list", "-deps", "-f", format, "./cmd/switchboard")
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%w: go list: %w\n%s", ErrBuild, err, stderr.Bytes())
	}
	var files []string
	for _, l := range strings.Split(string(out), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			files = append(files, l)
		}
	}
	return files, nil
}

// goTool is the go command: the one on PATH, else the one of GOROOT.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	if root := os.Getenv("GOROOT"); root != "" {
		return filepath.Join(root, "bin", "go")
	}
	return "go"
}
