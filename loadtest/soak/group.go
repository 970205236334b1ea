package main

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/switchboard-chat/switchboard/bench/calls/callclient"
	"github.com/switchboard-chat/switchboard/internal/testkit"
)

// groupRoom is a room with an MSC3401 call whose focus is the server's SFU
// device, and the users who take turns joining it.
type groupRoom struct {
	conf  string
	room  id.RoomID
	users []*mautrix.Client
	focus callclient.Focus
	joins atomic.Int64
	// lastVanished is the user who vanished from the room's previous call.
	lastVanished string
}

// groupStats count the group calls.
type groupStats struct {
	calls, joins, vanished, failed atomic.Int64
}

// groupCall joins every user of g to the call with the pion client of
// bench/calls (publishing Opus and VP8, subscribing to everyone else),
// waits until each receives every other's audio and video, keeps the call
// up for hold, then each leaves with a hangup and an emptied membership,
// except the vanisher (index vanish, or -1 for none), who just closes its
// connection and /sync as a crashed client would.
func groupCall(parent context.Context, g *groupRoom, hold time.Duration, vanish int, st *groupStats, cnt *counters) error {
	// Failures count against the run's context (see oneToOne).
	ctx, cancel := context.WithTimeout(parent, hold+60*time.Second)
	defer cancel()
	st.calls.Add(1)
	vanishedBefore := g.lastVanished
	g.lastVanished = ""
	parts := make([]*callclient.Participant, 0, len(g.users))
	defer func() {
		for _, p := range parts {
			p.Close()
		}
	}()
	fail := func(kind string, err error) error {
		if parent.Err() == nil {
			st.failed.Add(1)
			cnt.fail(parent, kind, err)
		}
		return err
	}
	for _, u := range g.users {
		self := string(u.UserID)
		cnt.requests.Add(1)
		// A new stream ID per join, as a real client's new session has
		// (a rejoin after a crash must not reuse the dead one's stream).
		p, err := callclient.Join(ctx, u, g.room, g.conf, g.focus, callclient.Options{
			Name:    fmt.Sprintf("%s-%d", u.UserID.Localpart(), g.joins.Add(1)),
			Publish: true, SubscribeTo: func(other string) bool { return other != self }, SyncTimeout: 10 * time.Second})
		if err != nil {
			return fail("group join", err)
		}
		parts = append(parts, p)
		cnt.requests.Add(1)
		if err := p.Invite(ctx); err != nil {
			return fail("group invite", err)
		}
		st.joins.Add(1)
	}
	for _, p := range parts {
		if err := p.WaitAnswered(ctx); err != nil {
			return fail("group answer", fmt.Errorf("%s: %w", p.UserID(), err))
		}
	}
	for _, p := range parts {
		for _, from := range parts {
			if p == from {
				continue
			}
			err := testkit.Poll(ctx, func() bool { a, v := p.Received(from.StreamID()); return a >= 10 && v >= 10 })
			if err != nil {
				a, v := p.Received(from.StreamID())
				_, inMeta := p.Metadata()[from.StreamID()]
				return fail("group media", fmt.Errorf("%w: %s never received %s's audio and video (got %d audio, %d video packets; stream in metadata %v; %s vanished from the previous call %v)",
					ErrCall, p.UserID(), from.UserID(), a, v, inMeta, from.UserID(), vanishedBefore == from.UserID()))
			}
		}
	}
	select {
	case <-ctx.Done():
		return nil
	case <-time.After(hold):
	}
	for i, p := range parts {
		if i == vanish {
			g.lastVanished = p.UserID()
			st.vanished.Add(1)
			p.Close()
			continue
		}
		cnt.requests.Add(2)
		if err := p.Hangup(ctx); err != nil {
			cnt.fail(parent, "group hangup", err)
		}
		if err := p.RemoveMember(ctx); err != nil {
			cnt.fail(parent, "group leave", err)
		}
		for _, err := range p.Errs() {
			cnt.fail(parent, "group client", err)
		}
		p.Close()
	}
	return nil
}
