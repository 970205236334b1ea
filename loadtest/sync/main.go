// Command sync is a load tool for Switchboard's Matrix homeserver core: N
// users in M rooms each send a message every interval while each
// long-polls /sync, and it reports the send→sync-delivery latency of every
// (message, room member) pair, request rates, errors and the server's CPU
// time.
//
// It starts the server itself (switchboard serve --dev on loopback port 0,
// a fresh data directory, rate limits off), so a run is one command:
//
//	go run ./loadtest/sync -users 100 -rooms 10 -interval 100ms -duration 60s
//	go run ./loadtest/sync ... -database postgres://user:pass@127.0.0.1/freshdb
//
// Traffic goes to 127.0.0.1 only; the run is bounded in time and in the
// number of requests and stops by itself. See README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/switchboard-chat/switchboard/internal/testbin"
	"github.com/switchboard-chat/switchboard/tests/e2e"
)

// config is the command line.
type config struct {
	users       int
	rooms       int
	interval    time.Duration
	duration    time.Duration
	syncTimeout time.Duration
	drain       time.Duration
	database    string
	serverBin   string
	serverArgs  string
	serverLog   string
	setupConc   int
	jsonOut     bool
}

// Bounds that keep a run finite on a shared machine.
const (
	maxUsers    = 2000
	maxDuration = 30 * time.Minute
	minInterval = time.Millisecond
)

func parseFlags(args []string, errOut io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("sync", flag.ContinueOnError)
	fs.SetOutput(errOut)
	fs.IntVar(&c.users, "users", 100, "number of users")
	fs.IntVar(&c.rooms, "rooms", 10, "number of rooms; users are spread evenly over them")
	fs.DurationVar(&c.interval, "interval", 100*time.Millisecond, "each user sends one message per interval")
	fs.DurationVar(&c.duration, "duration", 60*time.Second, "how long the users send")
	fs.DurationVar(&c.syncTimeout, "sync-timeout", 30*time.Second, "the /sync long-poll timeout each user asks for")
	fs.DurationVar(&c.drain, "drain", 10*time.Second, "after sending stops, how long to wait for outstanding deliveries")
	fs.StringVar(&c.database, "database", "", "postgres:// URL of a fresh database (default: SQLite in a fresh data directory)")
	fs.StringVar(&c.serverBin, "server-bin", "", "switchboard binary to run (default: build ./cmd/switchboard of this module)")
	fs.StringVar(&c.serverArgs, "server-args", "", "extra flags for `switchboard serve`, space-separated")
	fs.StringVar(&c.serverLog, "server-log", "", "write the server's log to this file (default: discarded with the data directory)")
	fs.IntVar(&c.setupConc, "setup-concurrency", 8, "parallel requests while registering users and joining rooms")
	fs.BoolVar(&c.jsonOut, "json", false, "print the report as JSON instead of a table")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	switch {
	case fs.NArg() > 0:
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	case c.users < 1 || c.users > maxUsers:
		return c, fmt.Errorf("-users must be 1..%d", maxUsers)
	case c.rooms < 1 || c.rooms > c.users:
		return c, errors.New("-rooms must be 1..users")
	case c.interval < minInterval:
		return c, fmt.Errorf("-interval must be at least %s", minInterval)
	case c.duration <= 0 || c.duration > maxDuration:
		return c, fmt.Errorf("-duration must be in (0, %s]", maxDuration)
	case c.syncTimeout <= 0 || c.drain < 0:
		return c, errors.New("-sync-timeout must be positive and -drain not negative")
	case c.setupConc < 1:
		return c, errors.New("-setup-concurrency must be at least 1")
	case c.database != "" && !strings.HasPrefix(c.database, "postgres://") && !strings.HasPrefix(c.database, "postgresql://"):
		return c, errors.New("-database must be a postgres:// URL")
	}
	return c, nil
}

func main() {
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "sync:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	rep, err := run(ctx, cfg, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "sync:", err)
		os.Exit(1)
	}
	if cfg.jsonOut {
		if err := rep.writeJSON(os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "sync:", err)
			os.Exit(1)
		}
	} else {
		rep.writeTable(os.Stdout)
	}
	if rep.Errors > 0 || rep.Missing > 0 {
		os.Exit(1)
	}
}

// run starts the server, runs the load and stops the server.
func run(ctx context.Context, cfg config, progress io.Writer) (*report, error) {
	say := func(format string, args ...any) {
		fmt.Fprintf(progress, "sync: "+format+"\n", args...)
	}
	tmp, err := os.MkdirTemp("", "switchboard-load-*")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)

	bin := cfg.serverBin
	if bin == "" {
		wd, err := os.Getwd()
		if err != nil {
			return nil, err
		}
		root, err := testbin.ModuleRoot(wd)
		if err != nil {
			return nil, err
		}
		say("building ./cmd/switchboard")
		if bin, err = testbin.Build(root, tmp); err != nil {
			return nil, err
		}
	}
	logPath := cfg.serverLog
	if logPath == "" {
		logPath = filepath.Join(tmp, "server.log")
	}
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	args := []string{"--rate-limit=false"}
	args = append(args, strings.Fields(cfg.serverArgs)...)
	proc, err := e2e.Start(ctx, e2e.Options{
		Bin: bin, DataDir: filepath.Join(tmp, "data"), Database: cfg.database,
		Args: args, Log: logFile,
	})
	if err != nil {
		return nil, fmt.Errorf("%w (server log: %s)", err, logPath)
	}
	defer proc.Kill()
	say("server pid %d serving on %s", proc.Pid(), proc.ClientURL())

	rep, err := newLoad(cfg, proc).run(ctx, say)
	if err != nil {
		return nil, err
	}
	rep.ServerArgs = strings.Join(args, " ")
	if cfg.serverLog != "" {
		rep.ServerLog = cfg.serverLog
	}
	if code, err := proc.Stop(30 * time.Second); err != nil || code != 0 {
		rep.Errors++
		rep.ErrorSamples = append(rep.ErrorSamples, fmt.Sprintf("server did not exit cleanly on SIGTERM: exit %d, %v", code, err))
	}
	return rep, nil
}

// databaseLabel names the backend without credentials.
func databaseLabel(url string) string {
	if url == "" {
		return "sqlite (data directory)"
	}
	rest := url[strings.Index(url, "://")+3:]
	if at := strings.LastIndexByte(rest, '@'); at >= 0 {
		rest = rest[at+1:]
	}
	if q := strings.IndexByte(rest, '?'); q >= 0 {
		rest = rest[:q]
	}
	return "postgres " + rest
}

// machine describes this machine for the report.
func machine() string {
	model := "unknown CPU"
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	kernel := "?"
	if data, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = strings.TrimSpace(string(data))
	}
	return fmt.Sprintf("%d CPUs (%s), Linux %s, %s", numCPU(), model, kernel, goVersion())
}
