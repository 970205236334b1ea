package cluster

import (
	"context"
	"errors"
	"net"
	"time"

	"github.com/redis/go-redis/v9"
)

// receiveLoop reads the wake-up channel. go-redis reconnects and
// subscribes again by itself after an error; the confirmation of that
// subscription is where this node catches up from the database.
func (n *Notifier) receiveLoop(ctx context.Context) {
	defer n.wg.Done()
	for ctx.Err() == nil {
		msg, err := n.ps.ReceiveTimeout(ctx, n.cfg.CheckEvery)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if ne := net.Error(nil); errors.As(err, &ne) && ne.Timeout() {
				// A quiet channel: a ping finds a dead connection.
				if err = n.ps.Ping(ctx); err == nil {
					continue
				}
			}
			n.lost(err)
			n.sleep(ctx, n.cfg.CheckEvery/2)
			continue
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				n.resubscribed(ctx)
			}
		case *redis.Message:
			n.receive(m.Payload)
		}
	}
}

func (n *Notifier) lost(err error) {
	if n.redisUp.Swap(false) {
		n.log.Warn("cluster: redis lost; waking /sync from the database every check until it returns", "err", err, "check_every", n.cfg.CheckEvery)
	}
}

// resubscribed runs once the subscription is live again: what was
// published meanwhile is lost, so the node catches up from the database,
// after subscribing (synapse#7427).
func (n *Notifier) resubscribed(ctx context.Context) {
	if !n.redisUp.Swap(true) {
		n.log.Info("cluster: redis is back; wake-ups resume")
	}
	n.checkNow(ctx, true)
}

func (n *Notifier) sleep(ctx context.Context, d time.Duration) {
	t := n.cfg.Clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C():
	}
}

// receive applies one message of another node.
func (n *Notifier) receive(payload string) {
	w, err := decodeWake([]byte(payload))
	if err != nil {
		n.log.Debug("cluster: ignoring a wake-up message", "err", err)
		return
	}
	if w.Node == n.cfg.NodeID {
		return
	}
	n.stats.received.Add(1)
	if w.Typing != nil {
		n.eph.heard(w.Typing)
	}
	if w.Pos > 0 || len(w.Keys) > 0 {
		n.local.Notify(w.Pos, w.Keys...)
	}
	if w.Link != nil {
		n.link(w.Link[0], w.Link[1])
	}
}

// checkLoop reads the database's position every CheckEvery.
func (n *Notifier) checkLoop(ctx context.Context) {
	defer n.wg.Done()
	t := n.cfg.Clock.NewTicker(n.cfg.CheckEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
			n.checkNow(ctx, false)
		}
	}
}

// checkNow reads the database's committed position and, if commits up to
// it are not known here, takes them as committed with unknown keys: it
// raises the floor and wakes every waiting request. While Redis is up a
// commit's message gets one whole check interval to arrive (the position
// read at the previous check is the one compared); while it is down, or
// when the subscription was just renewed (now), the position just read is.
func (n *Notifier) checkNow(ctx context.Context, now bool) {
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	m, err := n.cfg.Positions.Max(rctx)
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			n.log.Info("cluster: reading the database position", "err", err)
		}
		return
	}
	n.mu.Lock()
	target := n.seen
	if now || !n.redisUp.Load() {
		target = m
	}
	n.seen = m
	gap := n.known < target
	if gap {
		n.floor = max(n.floor, target)
		n.advanceLocked(target)
	}
	n.mu.Unlock()
	if gap {
		n.stats.repairs.Add(1)
		n.local.Start(target)
		n.local.WakeAll()
	}
}
