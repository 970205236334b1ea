// Command switchboard is the Switchboard call server: a Matrix homeserver
// core, an SFU and a TURN relay in one binary.
//
// Usage:
//
//	switchboard serve --dev
//	switchboard generate-config --server-name example.org > switchboard.yaml
//	switchboard serve --config switchboard.yaml
//	switchboard generate-keys --data-dir DIR
//	switchboard register --config switchboard.yaml --user alice
//	switchboard health --config switchboard.yaml
//	switchboard doctor --config switchboard.yaml
//
// main only wires the process (signals, exit code) to run, which tests call
// in-process.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// After the first signal, restore the default handling so that a
		// second SIGINT or SIGTERM ends a stuck shutdown at once.
		<-ctx.Done()
		stop()
	}()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

// run executes one switchboard command with the process environment and
// standard input.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	a := &app{stdin: os.Stdin, stdout: stdout, stderr: stderr, getenv: os.Getenv, self: invokedAs(os.Args[0])}
	return a.run(ctx, args)
}

// app carries what a command may touch of the outside world, so tests can
// run commands in-process with their own environment and output.
type app struct {
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string
	// self is how the binary was invoked, for commands printed to a person
	// ("bin/switchboard register ..."); empty reads as "switchboard".
	self string
	// doctorEnv, when set, replaces what doctor takes from the outside
	// world (certificate roots, DNS); tests set it.
	doctorEnv *doctorEnv
	// onServing, when set, receives the bound addresses once serve is
	// accepting connections on every listener.
	onServing func(boundAddrs)
}

const usageText = `Switchboard: Matrix calls (homeserver, SFU, TURN) in one binary.

Usage:
  switchboard serve --dev                      try it on this machine (NOT for production)
  switchboard serve --config switchboard.yaml  run with a configuration file
  switchboard generate-config --server-name example.org > switchboard.yaml
  switchboard generate-keys --data-dir DIR     write a signing key and a self-signed TLS pair
  switchboard register --config switchboard.yaml --user NAME [--admin]
  switchboard health [--config switchboard.yaml] [--ready]   probe a running server (exit 0 when healthy)
  switchboard doctor [--config switchboard.yaml]   check IPs, ports, TURN, federation, well-known, database, clock
  switchboard version

Run "switchboard COMMAND -h" for a command's flags.
`

func (a *app) run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprint(a.stderr, usageText)
		return fmt.Errorf("%w: no command given", ErrUsage)
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return a.serve(ctx, rest)
	case "generate-config":
		return a.generateConfig(rest)
	case "generate-keys":
		return a.generateKeys(rest)
	case "register":
		return a.register(ctx, rest)
	case "health":
		return a.health(ctx, rest)
	case "doctor":
		return a.doctor(ctx, rest)
	case "version", "--version", "-version":
		fmt.Fprintln(a.stdout, "switchboard", version())
		return nil
	case "help", "-h", "--help", "-help":
		fmt.Fprint(a.stdout, usageText)
		return nil
	}
	fmt.Fprint(a.stderr, usageText)
	return fmt.Errorf("%w: unknown command %q", ErrUsage, cmd)
}

// version is the module version and VCS revision the binary was built from.
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "(unknown)"
	}
	v := bi.Main.Version
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += " " + s.Value[:12]
		}
	}
	return v
}

// exitCode prints err (if any) and maps it to the process exit status: 0
// for success and -h, 2 for usage mistakes, 1 otherwise.
func exitCode(err error, stderr io.Writer) int {
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	}
	msg := strings.TrimPrefix(err.Error(), "switchboard: ")
	fmt.Fprintln(stderr, "switchboard: "+strings.ReplaceAll(msg, "\n", "\n  "))
	if errors.Is(err, ErrUsage) {
		return 2
	}
	return 1
}
