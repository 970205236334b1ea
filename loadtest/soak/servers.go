package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"

	"github.com/switchboard-chat/switchboard/internal/testbin"
	"github.com/switchboard-chat/switchboard/tests/e2e"
)

// server is one running switchboard process of the soak.
type server struct {
	proc *e2e.Process
	// name is the Matrix server name, 127.0.0.1:<federation port>, so the
	// other server reaches it directly (spec: server-server API,
	// "Resolving server names": an IP literal with a port).
	name string
	log  *os.File
}

// freePort asks the kernel for a free loopback TCP port. The server name
// must carry its federation port before the server starts, so this port
// is chosen here and handed to it (a small race with other programs that
// bind port 0 in between, acceptable for a load tool).
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// federationConfig lets the two loopback servers talk to each other:
// self-signed certificates and loopback peers are refused by default. The
// metrics listener (loopback) also serves Go profiles, so that the soak
// can keep heap profiles beside its samples.
const federationConfig = `federation:
  skip_tls_verify: true
  allow_cidrs: ["127.0.0.0/8"]
metrics:
  pprof: true
`

// startServer runs `switchboard serve --dev` with a federation-reachable
// server name; database is a postgres:// URL or "" for SQLite. Its log
// goes to logPath.
func startServer(ctx context.Context, bin, dir, database, logPath, logLevel string) (*server, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(dir, "soak.yaml")
	if err := os.WriteFile(cfgPath, []byte(federationConfig), 0o600); err != nil {
		return nil, err
	}
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	name := "127.0.0.1:" + strconv.Itoa(port)
	proc, err := e2e.Start(ctx, e2e.Options{
		Bin: bin, DataDir: filepath.Join(dir, "data"), Database: database, Log: logFile,
		Args: []string{
			"--config", cfgPath,
			"--server-name", name,
			"--federation-listen", name,
			"--rate-limit=false",
			"--log-level", logLevel,
		},
	})
	if err != nil {
		logFile.Close()
		return nil, fmt.Errorf("%w (server log: %s)", err, logFile.Name())
	}
	return &server{proc: proc, name: name, log: logFile}, nil
}

// stop sends SIGTERM and reports a non-zero exit.
func (s *server) stop() error {
	defer s.log.Close()
	code, err := s.proc.Stop(30e9)
	if err != nil {
		return err
	}
	if code != 0 {
		return fmt.Errorf("%w: exit status %d after SIGTERM", ErrServerExit, code)
	}
	return nil
}

// buildBinary builds ./cmd/switchboard of this module into dir, before
// any clock starts.
func buildBinary(dir string, progress io.Writer) (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	root, err := testbin.ModuleRoot(wd)
	if err != nil {
		return "", err
	}
	fmt.Fprintln(progress, "soak: building ./cmd/switchboard")
	return testbin.Build(root, dir)
}
