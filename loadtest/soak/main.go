// Command soak runs the real switchboard binary for a set time under the
// mix a busy community server sees, samples the server's own /metrics and
// judges whether anything leaked.
//
// The mix: standing users chatting in many rooms while long-polling
// /sync; new users registering every few seconds, chatting, then logging
// out or vanishing mid-/sync; 1:1 calls (m.call.invite, candidates,
// answer, hangup as room events, spec "Voice over IP") whose two parties
// relay real UDP through TURN allocations on loopback; group calls
// through the native focus (MSC3401/MSC3898) with pion publishers and
// subscribers, some members vanishing without a hangup; and federation:
// users of a second server process in half of the rooms and a 1:1 call
// across the two servers.
//
//	go run ./loadtest/soak -duration 3m [-postgres URL] [-out DIR]
//
// It writes samples.csv, one PNG per metric and verdict.txt to -out, and
// exits 1 when the verdict fails. See README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// Bounds that keep a run finite on a shared machine.
const (
	maxDuration = 24 * time.Hour
	maxUsers    = 500
)

func defaultConfig() config {
	return config{
		duration: 3 * time.Minute, sample: 10 * time.Second, settle: 2 * time.Minute,
		out: "soak-out", users: 24, rooms: 6, fedUsers: 4,
		msgInterval: 2 * time.Second, churnEvery: 3 * time.Second, callEvery: 3 * time.Second,
		groupRooms: 2, groupSize: 3, groupHold: 10 * time.Second, logLevel: "warn",
	}
}

func parseFlags(args []string, errOut io.Writer) (config, error) {
	c := defaultConfig()
	fs := flag.NewFlagSet("soak", flag.ContinueOnError)
	fs.SetOutput(errOut)
	fs.DurationVar(&c.duration, "duration", c.duration, "how long the load runs")
	fs.DurationVar(&c.sample, "sample", c.sample, "how often /metrics is sampled")
	fs.DurationVar(&c.settle, "settle", c.settle, "after the load, how long to wait for the server to return to its start values")
	fs.StringVar(&c.database, "postgres", "", "postgres:// URL of a fresh database for server A (default: SQLite)")
	fs.StringVar(&c.serverBin, "server-bin", "", "switchboard binary (default: build ./cmd/switchboard of this module before the clock starts)")
	fs.StringVar(&c.out, "out", c.out, "directory for samples.csv, the plots and verdict.txt")
	fs.IntVar(&c.users, "users", c.users, "standing chat users on server A")
	fs.IntVar(&c.rooms, "rooms", c.rooms, "chat rooms on server A; every other one is federated to server B")
	fs.IntVar(&c.fedUsers, "fed-users", c.fedUsers, "chat users on server B")
	fs.DurationVar(&c.msgInterval, "msg-interval", c.msgInterval, "each chat user sends about one message per interval")
	fs.DurationVar(&c.churnEvery, "churn-every", c.churnEvery, "a new user registers every interval")
	fs.DurationVar(&c.callEvery, "call-every", c.callEvery, "pause between 1:1 calls of a pair")
	fs.IntVar(&c.groupRooms, "group-rooms", c.groupRooms, "rooms with group calls running one after another")
	fs.IntVar(&c.groupSize, "group-size", c.groupSize, "members of each group call")
	fs.DurationVar(&c.groupHold, "group-hold", c.groupHold, "how long a group call stays up once media flows")
	fs.StringVar(&c.logLevel, "log-level", c.logLevel, "the servers' --log-level; their logs go to -out as server-a.log and server-b.log")
	fs.BoolVar(&c.keep, "keep", false, "keep the servers' data directories (SQLite databases, media) in -out/data")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	switch {
	case fs.NArg() > 0:
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	case c.duration <= 0 || c.duration > maxDuration:
		return c, fmt.Errorf("-duration must be in (0, %s]", maxDuration)
	case c.sample <= 0 || c.settle < 0:
		return c, errors.New("-sample must be positive and -settle not negative")
	case c.users < c.rooms || c.users > maxUsers || c.rooms < 2:
		return c, fmt.Errorf("need 2 <= -rooms <= -users <= %d", maxUsers)
	case c.fedUsers < 0 || c.groupRooms < 0 || c.groupSize < 2:
		return c, errors.New("-fed-users and -group-rooms must not be negative, -group-size at least 2")
	case c.msgInterval <= 0 || c.churnEvery <= 0 || c.callEvery < 0 || c.groupHold < 0:
		return c, errors.New("intervals must be positive")
	case c.database != "" && !strings.HasPrefix(c.database, "postgres://") && !strings.HasPrefix(c.database, "postgresql://"):
		return c, errors.New("-postgres must be a postgres:// URL")
	}
	return c, nil
}

func main() {
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if cfg.serverBin == "" {
		dir, err := os.MkdirTemp("", "switchboard-soak-bin-*")
		if err != nil {
			fmt.Fprintln(os.Stderr, "soak:", err)
			os.Exit(1)
		}
		defer os.RemoveAll(dir)
		if cfg.serverBin, err = buildBinary(dir, os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, "soak:", err)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	res, err := run(ctx, cfg, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		stop()
		os.Exit(1)
	}
	fmt.Print(report(res))
	fmt.Printf("outputs in %s\n", cfg.out)
	if !passed(res.Verdict) {
		stop()
		os.Exit(1)
	}
}
