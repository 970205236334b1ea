package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	stdsync "sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	hsync "github.com/switchboard-chat/switchboard/homeserver/sync"
	"github.com/switchboard-chat/switchboard/internal/clock"
)

// PositionReader reads the highest committed stream position of the
// shared database (storage.Positions).
type PositionReader interface {
	Max(ctx context.Context) (int64, error)
}

// Config configures New.
type Config struct {
	// NodeID names this node; required (cmd/switchboard generates one).
	NodeID string
	// Redis is the redis:// or rediss:// URL; required.
	Redis string
	// Channel is the pub/sub channel of this server's wake-ups. Default
	// "switchboard:wake".
	Channel string
	// Positions reads the database's committed position; required.
	Positions PositionReader
	// Clock drives the database checks. Default clock.Real().
	Clock clock.Clock
	// CheckEvery is how often the database's position is read: every check
	// while Redis is down, and a safety net for lost messages while it is
	// up. Default 1 s.
	CheckEvery time.Duration
	// SubscribeWait bounds how long New waits for Redis to confirm the
	// subscription before it starts without Redis. Default 3 s.
	SubscribeWait time.Duration
}

// publishQueue bounds the wake-ups waiting to be published; beyond it they
// are dropped (the other nodes close the gap from the database).
const publishQueue = 8192

// Notifier is the sync notifier of one node of a cluster. See the package
// doc.
type Notifier struct {
	cfg   Config
	log   *slog.Logger
	local *hsync.LocalNotifier
	rdb   *redis.Client
	ps    *redis.PubSub
	pub   chan wake
	// eph is the node's typing and presence (typing.go).
	eph *Ephemeral

	cancel context.CancelFunc
	wg     stdsync.WaitGroup

	redisUp atomic.Bool
	stats   struct {
		received, published, dropped, repairs atomic.Int64
	}

	mu stdsync.Mutex // guards known, floor, links, seen
	// known: the keys of every commit up to known have been notified here.
	known int64
	// floor: positions up to floor were committed without their keys being
	// known here (start, a repaired gap); LastFor never answers below it.
	floor int64
	// links maps a batch's prev to its last, for batches above known.
	links map[int64]int64
	// seen is the database position read at the previous check.
	seen int64
}

// New connects to Redis and subscribes to the wake-up channel before it
// returns, so that nothing committed after the homeserver reads its start
// position is missed. Redis being down is no error: the node starts on
// database checks alone and logs it.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*Notifier, error) {
	if cfg.NodeID == "" || len(cfg.NodeID) > maxNodeIDBytes {
		return nil, fmt.Errorf("%w: node ID must be 1 to %d bytes", ErrConfig, maxNodeIDBytes)
	}
	if cfg.Positions == nil {
		return nil, fmt.Errorf("%w: no position reader", ErrConfig)
	}
	opts, err := redis.ParseURL(cfg.Redis)
	if err != nil {
		return nil, fmt.Errorf("%w: redis URL: %v", ErrConfig, err)
	}
	if cfg.Channel == "" {
		cfg.Channel = "switchboard:wake"
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real()
	}
	if cfg.CheckEvery <= 0 {
		cfg.CheckEvery = time.Second
	}
	if cfg.SubscribeWait <= 0 {
		cfg.SubscribeWait = 3 * time.Second
	}
	if log == nil {
		log = slog.Default()
	}
	// Fail fast while Redis is down: a node must not stall on it.
	opts.DialTimeout = min(opts.DialTimeout, time.Second)
	if opts.DialTimeout == 0 {
		opts.DialTimeout = time.Second
	}
	opts.MaxRetries = 0
	n := &Notifier{
		cfg:   cfg,
		log:   log.With("component", "cluster", "node", cfg.NodeID),
		local: hsync.NewLocalNotifier(0),
		rdb:   redis.NewClient(opts),
		pub:   make(chan wake, publishQueue),
		links: make(map[int64]int64),
	}
	n.eph = newEphemeral(n, cfg.Clock)
	n.ps = n.rdb.Subscribe(ctx, cfg.Channel)
	wctx, cancel := context.WithTimeout(ctx, cfg.SubscribeWait)
	msg, err := n.ps.ReceiveTimeout(wctx, cfg.SubscribeWait)
	cancel()
	if _, ok := msg.(*redis.Subscription); ok && err == nil {
		n.redisUp.Store(true)
		n.log.Info("cluster: subscribed to wake-ups", "channel", cfg.Channel)
	} else {
		n.log.Warn("cluster: redis unreachable at start; waking /sync from the database every check until it answers", "err", err, "check_every", cfg.CheckEvery)
	}
	runCtx, stop := context.WithCancel(context.Background())
	n.cancel = stop
	n.wg.Add(3)
	go n.receiveLoop(runCtx)
	go n.publishLoop(runCtx)
	go n.checkLoop(runCtx)
	return n, nil
}

// Close stops the node's goroutines and closes its Redis connections.
func (n *Notifier) Close() error {
	n.cancel()
	err := n.ps.Close()
	n.wg.Wait()
	return errors.Join(err, n.rdb.Close())
}

// Waiting returns the number of requests of this node waiting on key.
func (n *Notifier) Waiting(key string) int { return n.local.Waiting(key) }

// RedisUp reports whether the wake-up subscription is live.
func (n *Notifier) RedisUp() bool { return n.redisUp.Load() }

// Stats are counters for tests and metrics.
type Stats struct {
	// Received counts wake-ups from other nodes; Published those sent;
	// Dropped those not sent (queue full or Redis down); Repairs the
	// database checks that found commits not heard of.
	Received, Published, Dropped, Repairs int64
}

// Stats returns the counters.
func (n *Notifier) Stats() Stats {
	return Stats{n.stats.received.Load(), n.stats.published.Load(), n.stats.dropped.Load(), n.stats.repairs.Load()}
}

// Start implements hsync.Notifier: the database's position at start. Keys
// touched up to it are not known here.
func (n *Notifier) Start(pos int64) {
	n.local.Start(pos)
	n.mu.Lock()
	defer n.mu.Unlock()
	n.floor = max(n.floor, pos)
	n.advanceLocked(pos)
}

// Notify implements hsync.Notifier for a local commit (or a wake-up with
// no position) and publishes it to the other nodes.
func (n *Notifier) Notify(pos int64, keys ...string) {
	n.local.Notify(pos, keys...)
	n.enqueue(wake{Node: n.cfg.NodeID, Pos: pos, Keys: keys})
}

// Committed implements homeserver.ClusterWrites: a local batch committed
// the positions (prev, last], after its Notify calls.
func (n *Notifier) Committed(prev, last int64) {
	n.link(prev, last)
	n.enqueue(wake{Node: n.cfg.NodeID, Link: []int64{prev, last}})
}

// Listen implements hsync.Notifier.
func (n *Notifier) Listen(keys []string) (int64, <-chan struct{}, func()) {
	return n.local.Listen(keys)
}

// Position implements hsync.Notifier. Positions commit in order across
// the cluster (storage/cluster.go), so every position up to the highest
// commit heard of is committed.
func (n *Notifier) Position() int64 { return n.local.Position() }

// LastFor implements hsync.Notifier. While some commit up to Position is
// not known here with its keys, any key may have changed up to Position.
func (n *Notifier) LastFor(key string) int64 {
	n.mu.Lock()
	known, floor := n.known, n.floor
	n.mu.Unlock()
	if pos := n.local.Position(); known < pos {
		return pos
	}
	return max(n.local.LastFor(key), floor)
}

// link records a committed batch and moves known along the chain.
func (n *Notifier) link(prev, last int64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if last <= n.known {
		return
	}
	if len(n.links) >= 100000 {
		clear(n.links) // a chain this broken waits for the next check
	}
	n.links[prev] = max(n.links[prev], last)
	n.advanceLocked(n.known)
}

// advanceLocked sets known to at least to and follows the links from it.
func (n *Notifier) advanceLocked(to int64) {
	n.known = max(n.known, to)
	for {
		next, ok := n.links[n.known]
		if !ok {
			break
		}
		delete(n.links, n.known)
		n.known = max(n.known, next)
	}
	for p := range n.links {
		if p < n.known {
			delete(n.links, p)
		}
	}
}

func (n *Notifier) enqueue(w wake) {
	if !n.redisUp.Load() {
		n.stats.dropped.Add(1)
		return
	}
	select {
	case n.pub <- w:
	default:
		n.stats.dropped.Add(1)
	}
}

// publishLoop sends queued wake-ups in order, many per round trip.
func (n *Notifier) publishLoop(ctx context.Context) {
	defer n.wg.Done()
	batch := make([]wake, 0, 256)
	for {
		select {
		case <-ctx.Done():
			return
		case w := <-n.pub:
			batch = append(batch[:0], w)
		}
	more:
		for len(batch) < cap(batch) {
			select {
			case w := <-n.pub:
				batch = append(batch, w)
			default:
				break more
			}
		}
		n.publish(ctx, batch)
	}
}

func (n *Notifier) publish(ctx context.Context, batch []wake) {
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	pipe := n.rdb.Pipeline()
	for _, w := range batch {
		b, err := encodeWake(w)
		if err != nil {
			continue
		}
		pipe.Publish(pctx, n.cfg.Channel, b)
	}
	if _, err := pipe.Exec(pctx); err != nil {
		// The other nodes close the gap from the database.
		n.stats.dropped.Add(int64(len(batch)))
		n.log.Debug("cluster: publish failed", "err", err, "messages", len(batch))
		return
	}
	n.stats.published.Add(int64(len(batch)))
}
