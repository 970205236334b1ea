package main

import (
	"context"
	"fmt"
	"time"

	"maunium.net/go/mautrix"

	"github.com/switchboard-chat/switchboard/internal/testkit/lkclient"
)

// lkPhaseNames are the phases of one LiveKit join (lkclient.Phases), each
// timed from the OpenID token request that starts it.
var lkPhaseNames = []string{"token (/sfu/get)", "JoinResponse", "answer applied", "first video RTP (key frame)"}

// liveKitScenario puts a LiveKit publisher in the room's LiveKit call
// (the same Matrix room as the native call, another SFU conference), then
// makes the joins: each a fresh user, already in the Matrix room, who
// gets an OpenID token, a JWT from /sfu/get, connects, publishes audio
// and video and waits for the publisher's first key frame packet.
// Joiners auto-subscribe, as livekit-client does by default; the
// publisher does not (it would gain two m-lines per joiner, and 200
// joins made its renegotiations slow enough for joins to time out).
func (b *bench) liveKitScenario(ctx context.Context) (scenarioReport, error) {
	sr := scenarioReport{Name: "livekit idle", Protocol: "livekit"}
	pubCli, err := b.register(ctx, "lkpub")
	if err != nil {
		return sr, err
	}
	if _, err := pubCli.JoinRoomByID(ctx, b.room); err != nil {
		return sr, err
	}
	jctx, cancel := context.WithTimeout(ctx, b.cfg.joinTimeout)
	pub, err := lkclient.Join(jctx, b.hc, b.proc.ClientURL(), pubCli, b.room, "lkpub", false)
	cancel()
	if err != nil {
		return sr, fmt.Errorf("livekit publisher: %w", err)
	}
	defer pub.Close()
	joiners, err := b.registerMany(ctx, "lkjoiner", b.cfg.joins)
	if err != nil {
		return sr, err
	}
	for _, cli := range joiners {
		if _, err := cli.JoinRoomByID(ctx, b.room); err != nil {
			return sr, err
		}
	}
	b.say("livekit: publisher in the call, %d joiners in the room", len(joiners))
	cpu0, _ := b.proc.CPUSeconds()
	start := time.Now()
	var samples [][]time.Duration
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
		s, early, err := b.liveKitJoin(ctx, cli, i)
		if early {
			sr.EarlyVideo++
		}
		if err != nil {
			sr.Failures = append(sr.Failures, fmt.Sprintf("livekit join %d: %v", i, err))
			continue
		}
		samples = append(samples, s)
		if (i+1)%50 == 0 {
			b.say("livekit: %d/%d joins", i+1, len(joiners))
		}
	}
	sr.WallSeconds = time.Since(start).Seconds()
	cpu1, _ := b.proc.CPUSeconds()
	sr.ServerCPUSeconds = cpu1 - cpu0
	for i, name := range lkPhaseNames {
		var from, step []time.Duration
		for _, s := range samples {
			from = append(from, s[i])
			if i > 0 {
				step = append(step, s[i]-s[i-1])
			} else {
				step = append(step, s[i])
			}
		}
		sr.Phases = append(sr.Phases, phaseReport{Phase: name, FromInvite: summarise(from), Step: summarise(step)})
	}
	for _, err := range pub.Errs() {
		sr.Failures = append(sr.Failures, fmt.Sprintf("livekit publisher: %v", err))
	}
	return sr, nil
}

// liveKitJoin is one measured LiveKit join; it leaves at the end. early
// reports video that came before the first key frame (see
// scenarioReport.EarlyVideo).
func (b *bench) liveKitJoin(ctx context.Context, cli *mautrix.Client, i int) (_ []time.Duration, early bool, _ error) {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.joinTimeout)
	defer cancel()
	c, err := lkclient.Join(ctx, b.hc, b.proc.ClientURL(), cli, b.room, fmt.Sprintf("lkjoiner%d", i), true)
	if err != nil {
		return nil, false, err
	}
	defer c.Close()
	for {
		ph := c.Phases()
		early = ph.VideoBeforeKeyframe > 0
		if !ph.FirstVideo.IsZero() && !ph.Answered.IsZero() {
			if errs := c.Errs(); len(errs) > 0 {
				return nil, early, errs[0]
			}
			out := make([]time.Duration, 0, 4)
			for _, at := range []time.Time{ph.Token, ph.Joined, ph.Answered, ph.FirstVideo} {
				out = append(out, at.Sub(ph.Start))
			}
			return out, early, nil
		}
		if errs := c.Errs(); len(errs) > 0 {
			return nil, early, errs[0]
		}
		select {
		case <-ctx.Done():
			return nil, early, fmt.Errorf("phases reached %+v: %w", ph, ctx.Err())
		case <-time.After(2 * time.Millisecond):
		}
	}
}
