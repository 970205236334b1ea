// Command calls measures group-call setup through Switchboard's SFU focus,
// phase by phase: to-device m.call.invite sent → m.call.answer received
// (by /sync) → ICE connected → DTLS connected → first RTP (and first
// video RTP) at the new participant from a publisher already in the call.
//
// It starts the real server (switchboard serve --dev on loopback port 0, a
// fresh data directory, rate limits off), puts one publisher in a call,
// then makes -joins sequential joins, each by a fresh user who publishes
// audio and video, subscribes to the publisher, waits for its first
// packets and hangs up. It does that on the idle server, then again while
// -load other participants stream audio and video in the same call (each
// subscribed to -load-subs of the others). It prints p50/p99 per phase:
//
//	go run ./bench/calls -joins 200 -load 20
//
// Traffic goes to 127.0.0.1 only; every wait is bounded. See README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// config is the command line.
type config struct {
	joins       int
	load        int
	loadSubs    int
	joinTimeout time.Duration
	joinGap     time.Duration
	keyframes   time.Duration
	serverBin   string
	serverLog   string
	jsonOut     bool
	protocol    string
}

// Bounds that keep a run finite on a shared machine.
const (
	maxJoins = 2000
	maxLoad  = 100
)

func parseFlags(args []string, errOut io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("calls", flag.ContinueOnError)
	fs.SetOutput(errOut)
	fs.IntVar(&c.joins, "joins", 200, "sequential joins per scenario")
	fs.IntVar(&c.load, "load", 20, "participants streaming audio and video during the loaded scenario (0: idle only)")
	fs.IntVar(&c.loadSubs, "load-subs", 2, "how many other streamers each streamer subscribes to (audio and video)")
	fs.DurationVar(&c.keyframes, "keyframe-interval", -1, "periodic key frames of the published video; negative: only when the SFU asks (PLI), as browsers do")
	fs.DurationVar(&c.joinTimeout, "join-timeout", 10*time.Second, "give up on one join after this long")
	fs.DurationVar(&c.joinGap, "join-gap", 0, "pause between one join's end and the next one's start (0: back to back)")
	fs.StringVar(&c.serverBin, "server-bin", "", "switchboard binary to run (default: build ./cmd/switchboard of this module)")
	fs.StringVar(&c.serverLog, "server-log", "", "write the server's log to this file (default: discarded)")
	fs.StringVar(&c.protocol, "protocol", "both", "native (Matrix focus: idle and loaded), livekit (LiveKit signalling: idle), or both")
	fs.BoolVar(&c.jsonOut, "json", false, "print the report as JSON instead of a table")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	switch {
	case fs.NArg() > 0:
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	case c.joins < 1 || c.joins > maxJoins:
		return c, fmt.Errorf("-joins must be 1..%d", maxJoins)
	case c.load < 0 || c.load > maxLoad:
		return c, fmt.Errorf("-load must be 0..%d", maxLoad)
	case c.loadSubs < 0 || (c.load > 0 && c.loadSubs >= c.load):
		return c, errors.New("-load-subs must be 0..load-1")
	case c.joinTimeout <= 0 || c.joinTimeout > 5*time.Minute:
		return c, errors.New("-join-timeout must be in (0, 5m]")
	case c.protocol != "native" && c.protocol != "livekit" && c.protocol != "both":
		return c, errors.New("-protocol must be native, livekit or both")
	case c.joinGap < 0 || c.joinGap > time.Minute:
		return c, errors.New("-join-gap must be in [0, 1m]")
	}
	return c, nil
}

func main() {
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "calls:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	rep, err := run(ctx, cfg, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "calls:", err)
		os.Exit(1)
	}
	if cfg.jsonOut {
		if err := rep.writeJSON(os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "calls:", err)
			os.Exit(1)
		}
	} else {
		rep.writeTable(os.Stdout)
	}
	if rep.failed() {
		os.Exit(1)
	}
}
