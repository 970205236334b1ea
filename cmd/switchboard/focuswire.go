package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-chat/switchboard/homeserver"
	"github.com/switchboard-chat/switchboard/sfu"
	"github.com/switchboard-chat/switchboard/signalling"
)

// runningFocus is the group-call focus (MSC3401/MSC3898) and the goroutine
// running it.
type runningFocus struct {
	focus  *signalling.Focus
	cancel context.CancelFunc
	done   chan error
	log    *slog.Logger
}

// startFocus creates the SFU focus as a service device of hs, speaking
// through node, and runs it. Clients address it as (UserID, DeviceID);
// signalling/README.md describes what they send it.
func startFocus(hs *homeserver.Server, node *sfu.SFU, peers signalling.PeerDirectory, log *slog.Logger,
	reg prometheus.Registerer) (*runningFocus, error) {
	f, err := signalling.NewFocus(signalling.FocusConfig{
		Homeserver: hs,
		SFU:        node,
		Peers:      peers,
		Logger:     log,
		Registerer: reg,
	})
	if err != nil {
		return nil, fmt.Errorf("group-call focus: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &runningFocus{focus: f, cancel: cancel, done: make(chan error, 1), log: log}
	go func() { r.done <- f.Run(ctx) }()
	log.Info(fmt.Sprintf("group calls: focus %s device %s", f.UserID(), f.DeviceID()),
		"focus_user_id", f.UserID(), "focus_device_id", f.DeviceID())
	return r, nil
}

// stop ends every call (clients get m.call.hangup), stops the focus and
// waits for it. It must run before the SFU and the homeserver close. Safe
// to call twice.
func (r *runningFocus) stop() {
	if r == nil || r.cancel == nil {
		return
	}
	r.cancel()
	if err := <-r.done; err != nil && !errors.Is(err, signalling.ErrClosed) {
		r.log.Warn("group-call focus stopped with an error", "err", err)
	}
	if err := r.focus.Close(); err != nil {
		r.log.Warn("closing group-call focus", "err", err)
	}
	r.cancel = nil
}
