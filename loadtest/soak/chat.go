package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard-chat/switchboard/loadtest/mxclient"
)

// counters tally requests and failures of the whole mix.
type counters struct {
	requests atomic.Int64
	acked    atomic.Int64

	mu      sync.Mutex
	errs    map[string]int
	samples []string
}

// fail records a request failure by kind; a failure caused by the mix
// itself cancelling a request (a vanishing client, the end of the run) is
// not one.
func (c *counters) fail(ctx context.Context, kind string, err error) {
	if err == nil || ctx.Err() != nil || errors.Is(err, context.Canceled) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.errs == nil {
		c.errs = make(map[string]int)
	}
	c.errs[kind]++
	if len(c.samples) < 20 {
		c.samples = append(c.samples, kind+": "+mxclient.Truncate(err.Error(), 300))
	}
}

func (c *counters) errorCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, v := range c.errs {
		n += v
	}
	return n
}

// syncLoop long-polls until ctx ends; every answer goes to onSync.
func syncLoop(ctx context.Context, cli *client, cnt *counters, timeoutMS int64, onSync func(*syncResponse)) {
	since := ""
	for ctx.Err() == nil {
		cnt.requests.Add(1)
		r, err := cli.sync(ctx, since, timeoutMS)
		if err != nil {
			cnt.fail(ctx, "sync", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		since = r.NextBatch
		if onSync != nil {
			onSync(r)
		}
	}
}

// acked is one message the server acknowledged with an event ID.
type acked struct {
	room, eventID string
	base          string // the sender's server (its client URL)
	at            time.Time
}

// ledger is every acknowledged message of the run.
type ledger struct {
	mu   sync.Mutex
	msgs []acked
}

func (l *ledger) add(room, eventID, base string) {
	l.mu.Lock()
	l.msgs = append(l.msgs, acked{room: room, eventID: eventID, base: base, at: time.Now()})
	l.mu.Unlock()
}

func (l *ledger) all() []acked {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]acked(nil), l.msgs...)
}

// chatter is a registered user: sends messages into its rooms at an
// interval and long-polls /sync, until ctx ends.
func chatter(ctx context.Context, cli *client, rooms []string, interval time.Duration, cnt *counters, led *ledger) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		syncLoop(sctx, cli, cnt, 10000, nil)
	}()
	defer wg.Wait()
	// Spread the first send over one interval.
	t := time.NewTimer(rand.N(interval) + time.Millisecond)
	defer t.Stop()
	seq := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		room := rooms[rand.IntN(len(rooms))]
		seq++
		txn := fmt.Sprintf("soak-%d-%d", time.Now().UnixNano(), seq)
		cnt.requests.Add(1)
		evID, err := cli.sendEvent(ctx, room, "m.room.message", txn,
			map[string]string{"msgtype": "m.text", "body": "soak " + strconv.Itoa(seq)})
		if err != nil {
			cnt.fail(ctx, "send", err)
		} else {
			cnt.acked.Add(1)
			led.add(room, evID, cli.Base)
		}
		t.Reset(interval/2 + rand.N(interval))
	}
}

// churner registers a new user every interval; each joins a room, syncs,
// sends a few messages and then either logs out or vanishes (its /sync
// long-poll is cut mid-request and it never comes back).
func churner(ctx context.Context, base string, newHTTP func() *httpClients, rooms []string, every time.Duration, cnt *counters, led *ledger, n *atomic.Int64) {
	var wg sync.WaitGroup
	defer wg.Wait()
	t := time.NewTicker(every)
	defer t.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			hcs := newHTTP()
			defer hcs.close()
			cli := &client{mxclient.Client{Base: base, HC: hcs.hc}}
			name := fmt.Sprintf("churn%d_%d", time.Now().UnixNano()%1e9, i)
			cnt.requests.Add(1)
			if err := cli.Register(ctx, name, "churn password "+name); err != nil {
				cnt.fail(ctx, "register", err)
				return
			}
			n.Add(1)
			room := rooms[rand.IntN(len(rooms))]
			cnt.requests.Add(1)
			if err := cli.join(ctx, room); err != nil {
				cnt.fail(ctx, "join", err)
				return
			}
			life, cancel := context.WithTimeout(ctx, every*3)
			defer cancel()
			chatter(life, cli, []string{room}, every/2, cnt, led)
			if ctx.Err() == nil && i%2 == 0 {
				cnt.requests.Add(1)
				cnt.fail(ctx, "logout", cli.logout(ctx))
			}
		}()
	}
}

// callEvent is an m.call.* room event seen by a call user's /sync.
type callEvent struct {
	Type    string
	Sender  string
	Content map[string]json.RawMessage
}

func (e callEvent) str(key string) string {
	var s string
	_ = json.Unmarshal(e.Content[key], &s)
	return s
}

func jsonUnmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }
