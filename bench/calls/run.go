package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/switchboard-chat/switchboard/bench/calls/callclient"
	"github.com/switchboard-chat/switchboard/internal/testbin"
	"github.com/switchboard-chat/switchboard/tests/e2e"
)

// bench is one run against one server.
type bench struct {
	cfg   config
	proc  *e2e.Process
	hc    *http.Client
	focus callclient.Focus
	owner *mautrix.Client
	room  id.RoomID
	conf  string
	pub   *callclient.Participant
	say   func(string, ...any)
	users int // registered so far, for fresh localparts
}

// run starts the server, measures the scenarios and stops the server.
func run(ctx context.Context, cfg config, progress io.Writer) (*report, error) {
	say := func(format string, args ...any) { fmt.Fprintf(progress, "calls: "+format+"\n", args...) }
	tmp, err := os.MkdirTemp("", "switchboard-calls-*")
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
	// The server runs in its data directory: a relative path would not
	// name the same file there.
	if bin, err = filepath.Abs(bin); err != nil {
		return nil, err
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
	proc, err := e2e.Start(ctx, e2e.Options{Bin: bin, DataDir: filepath.Join(tmp, "data"),
		Args: []string{"--rate-limit=false"}, Log: logFile})
	if err != nil {
		return nil, fmt.Errorf("%w (server log: %s)", err, logPath)
	}
	defer proc.Kill()
	say("server pid %d serving on %s", proc.Pid(), proc.ClientURL())

	tr := &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: 30 * time.Second}
	defer tr.CloseIdleConnections()
	b := &bench{cfg: cfg, proc: proc, hc: &http.Client{Transport: tr, Timeout: 2 * time.Minute}, conf: "bench", say: say}
	rep, err := b.run(ctx)
	if err != nil {
		return nil, err
	}
	if code, err := proc.Stop(30 * time.Second); err != nil || code != 0 {
		rep.Errors = append(rep.Errors, fmt.Sprintf("server did not exit cleanly on SIGTERM: exit %d, %v", code, err))
	}
	return rep, nil
}

func (b *bench) register(ctx context.Context, prefix string) (*mautrix.Client, error) {
	b.users++
	return callclient.Register(ctx, b.proc.ClientURL(), fmt.Sprintf("%s%d", prefix, b.users), "bench password", b.hc)
}

// registerMany registers n users, four at a time.
func (b *bench) registerMany(ctx context.Context, prefix string, n int) ([]*mautrix.Client, error) {
	out := make([]*mautrix.Client, n)
	errs := make([]error, n)
	first := b.users + 1
	b.users += n
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			out[i], errs[i] = callclient.Register(ctx, b.proc.ClientURL(), fmt.Sprintf("%s%d", prefix, first+i), "bench password", b.hc)
		})
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

func (b *bench) run(ctx context.Context) (*report, error) {
	rep := &report{Joins: b.cfg.joins, Load: b.cfg.load, LoadSubs: b.cfg.loadSubs}
	owner, err := b.register(ctx, "owner")
	if err != nil {
		return nil, err
	}
	b.owner = owner
	b.focus = callclient.Focus{UserID: "@switchboard:" + owner.UserID.Homeserver(), DeviceID: "SFU"}
	if b.room, err = callclient.CreateCallRoom(ctx, owner, b.conf, b.focus); err != nil {
		return nil, err
	}
	// The publisher every joiner waits for.
	b.pub, err = b.participant(ctx, owner, callclient.Options{Name: "pub", Publish: true,
		KeyframeInterval: b.cfg.keyframes})
	if err != nil {
		return nil, err
	}
	defer b.pub.Close()
	b.say("publisher in the call")

	if b.cfg.protocol != "native" {
		lk, err := b.liveKitScenario(ctx)
		if err != nil {
			return nil, err
		}
		rep.Scenarios = append(rep.Scenarios, lk)
	}
	if b.cfg.protocol == "livekit" {
		return rep, nil
	}
	idle, err := b.scenario(ctx, "idle", 0)
	if err != nil {
		return nil, err
	}
	rep.Scenarios = append(rep.Scenarios, idle)
	if b.cfg.load > 0 {
		loaded, err := b.scenario(ctx, fmt.Sprintf("%d streaming", b.cfg.load), b.cfg.load)
		if err != nil {
			return nil, err
		}
		rep.Scenarios = append(rep.Scenarios, loaded)
	}
	for _, p := range []*callclient.Participant{b.pub} {
		for _, err := range p.Errs() {
			rep.Errors = append(rep.Errors, fmt.Sprintf("publisher: %v", err))
		}
	}
	return rep, nil
}

// participant joins the call as cli and waits for the answer and ICE.
func (b *bench) participant(ctx context.Context, cli *mautrix.Client, o callclient.Options) (*callclient.Participant, error) {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.joinTimeout)
	defer cancel()
	p, err := callclient.Join(ctx, cli, b.room, b.conf, b.focus, o)
	if err != nil {
		return nil, err
	}
	if err := p.Invite(ctx); err != nil {
		p.Close()
		return nil, err
	}
	if err := p.WaitAnswered(ctx); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

// scenario starts load streamers (if any), makes the joins, and stops the
// streamers.
func (b *bench) scenario(ctx context.Context, name string, load int) (scenarioReport, error) {
	sr := scenarioReport{Name: name, Protocol: "native"}
	var streamers []*callclient.Participant
	defer func() {
		for _, p := range streamers {
			_ = p.Hangup(context.Background())
			p.Close()
		}
	}()
	if load > 0 {
		clis, err := b.registerMany(ctx, "streamer", load)
		if err != nil {
			return sr, err
		}
		ids := make([]string, load)
		for i, c := range clis {
			ids[i] = string(c.UserID)
		}
		for i, c := range clis {
			subs := map[string]bool{}
			for k := 1; k <= b.cfg.loadSubs; k++ {
				subs[ids[(i+k)%load]] = true
			}
			p, err := b.participant(ctx, c, callclient.Options{Name: fmt.Sprintf("streamer%d", i), Publish: true,
				KeyframeInterval: b.cfg.keyframes,
				SubscribeTo:      func(u string) bool { return subs[u] }})
			if err != nil {
				return sr, fmt.Errorf("streamer %d: %w", i, err)
			}
			streamers = append(streamers, p)
		}
		// Streaming means media flows to the subscribers.
		deadline := time.Now().Add(30 * time.Second)
		for i, p := range streamers {
			for k := 1; k <= b.cfg.loadSubs; k++ {
				o := streamers[(i+k)%load]
				for {
					a, v := p.Received(o.StreamID())
					if a > 0 && v > 0 {
						break
					}
					if time.Now().After(deadline) {
						return sr, fmt.Errorf("streamer %d receives nothing from streamer %d", i, (i+k)%load)
					}
					select {
					case <-ctx.Done():
						return sr, ctx.Err()
					case <-time.After(20 * time.Millisecond):
					}
				}
			}
		}
		b.say("%s: %d streamers in the call, each receiving %d others", name, load, b.cfg.loadSubs)
	}
	joiners, err := b.registerMany(ctx, "joiner", b.cfg.joins)
	if err != nil {
		return sr, err
	}
	cpu0, _ := b.proc.CPUSeconds()
	start := time.Now()
	var samples []phaseSample
	for i, cli := range joiners {
		if i > 0 && b.cfg.joinGap > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(b.cfg.joinGap):
			}
		}
		if ctx.Err() != nil {
			return sr, ctx.Err()
		}
		s, err := b.join(ctx, cli)
		if err != nil {
			sr.Failures = append(sr.Failures, fmt.Sprintf("join %d: %v", i, err))
			continue
		}
		samples = append(samples, s)
		if (i+1)%50 == 0 {
			b.say("%s: %d/%d joins", name, i+1, len(joiners))
		}
	}
	wall := time.Since(start)
	cpu1, _ := b.proc.CPUSeconds()
	sr.summarise(samples)
	sr.WallSeconds = wall.Seconds()
	sr.ServerCPUSeconds = cpu1 - cpu0
	for _, p := range streamers {
		for _, err := range p.Errs() {
			sr.Failures = append(sr.Failures, fmt.Sprintf("streamer: %v", err))
		}
	}
	return sr, nil
}

// join is one measured join: a fresh participant (publishing audio and
// video, subscribing to the publisher) invites, waits for the publisher's
// first packets, and hangs up.
func (b *bench) join(ctx context.Context, cli *mautrix.Client) (phaseSample, error) {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.joinTimeout)
	defer cancel()
	pubUser := b.pub.UserID()
	p, err := callclient.Join(ctx, cli, b.room, b.conf, b.focus, callclient.Options{Publish: true,
		KeyframeInterval: b.cfg.keyframes, SubscribeTo: func(u string) bool { return u == pubUser }})
	if err != nil {
		return phaseSample{}, err
	}
	defer func() {
		_ = p.Hangup(context.Background())
		p.Close()
		_ = p.RemoveMember(context.Background())
	}()
	if err := p.Invite(ctx); err != nil {
		return phaseSample{}, err
	}
	for {
		ph := p.Phases()
		if !ph.FirstRTP.IsZero() && !ph.FirstVideo.IsZero() && !ph.DTLSConnected.IsZero() && !ph.Answered.IsZero() {
			for _, err := range p.Errs() {
				return phaseSample{}, err
			}
			if ph.VideoBeforeKeyframe > 0 {
				return phaseSample{}, fmt.Errorf("video began with %d packets before the first key frame", ph.VideoBeforeKeyframe)
			}
			return newSample(ph), nil
		}
		select {
		case <-ctx.Done():
			return phaseSample{}, fmt.Errorf("phases reached %+v: %w", ph, ctx.Err())
		case <-p.HungUp():
			return phaseSample{}, fmt.Errorf("%w: %s", callclient.ErrRefused, p.HangupReason())
		case <-time.After(2 * time.Millisecond):
		}
	}
}
