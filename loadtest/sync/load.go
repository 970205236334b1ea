package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard-chat/switchboard/loadtest/mxclient"
	"github.com/switchboard-chat/switchboard/tests/e2e"
)

// user is one simulated client: it sends into its room and long-polls
// /sync.
type user struct {
	idx    int
	room   int
	c      *client
	filter string
	since  string

	// starts[seq] is the send start of message seq (Unix ns), stored
	// before the request goes out; ok[seq] is set after its 200.
	starts []atomic.Int64
	ok     []atomic.Bool
	// attempts is the number of sends made; read after the senders end.
	attempts int
	sendDur  []time.Duration // owned by the sender goroutine

	// Owned by the sync goroutine, read after it ends: which messages
	// this user has received (by sender index, then seq), and the
	// delivery latency of each first receipt.
	received  map[int][]bool
	latencies []time.Duration
	dups      int64
	limited   int64
}

// load is one run against a started server.
type load struct {
	cfg    config
	proc   *e2e.Process
	hc     *http.Client
	prefix string // marks this run's message bodies
	maxSeq int
	users  []*user
	roomID []string
	// members[r] are the indexes of the users in room r.
	members [][]int

	receivedTotal atomic.Int64
	syncs         atomic.Int64

	errMu      sync.Mutex // guards errKinds, errSamples, errCount
	errKinds   map[string]int
	errSamples []string
	errCount   int64
}

func newLoad(cfg config, proc *e2e.Process) *load {
	tr := &http.Transport{
		MaxIdleConns:        4*cfg.users + 16,
		MaxIdleConnsPerHost: 4*cfg.users + 16,
		IdleConnTimeout:     90 * time.Second,
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	l := &load{
		cfg:      cfg,
		proc:     proc,
		hc:       &http.Client{Transport: tr, Timeout: cfg.syncTimeout + 30*time.Second},
		prefix:   "lt" + hex.EncodeToString(b),
		maxSeq:   int(cfg.duration/cfg.interval) + 2,
		members:  make([][]int, cfg.rooms),
		errKinds: make(map[string]int),
	}
	for i := range cfg.users {
		u := &user{
			idx: i, room: i % cfg.rooms,
			c:        &client{mxclient.Client{Base: proc.ClientURL(), HC: l.hc}},
			starts:   make([]atomic.Int64, l.maxSeq),
			ok:       make([]atomic.Bool, l.maxSeq),
			received: make(map[int][]bool),
		}
		l.users = append(l.users, u)
		l.members[u.room] = append(l.members[u.room], i)
	}
	return l
}

// recordError counts a failed request by kind and keeps a few samples.
func (l *load) recordError(kind string, err error) {
	var ae *mxclient.APIError
	if errors.As(err, &ae) {
		kind = fmt.Sprintf("%s %d", kind, ae.Status)
	} else {
		kind += " transport"
	}
	l.errMu.Lock()
	defer l.errMu.Unlock()
	l.errCount++
	l.errKinds[kind]++
	if len(l.errSamples) < 10 {
		l.errSamples = append(l.errSamples, err.Error())
	}
}

// parallel runs f(i) for i in [0,n) with at most conc at once and returns
// the first error.
func parallel(ctx context.Context, n, conc int, f func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sem := make(chan struct{}, conc)
	var once sync.Once
	var first error
	var wg sync.WaitGroup
	for i := range n {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := f(ctx, i); err != nil {
				once.Do(func() { first = err; cancel() })
			}
		})
	}
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return first
}

func (l *load) setup(ctx context.Context, say func(string, ...any)) error {
	conc := l.cfg.setupConc
	say("registering %d users", len(l.users))
	if err := parallel(ctx, len(l.users), conc, func(ctx context.Context, i int) error {
		return l.users[i].c.Register(ctx, fmt.Sprintf("%su%d", l.prefix, i), "load-test-password-"+l.prefix)
	}); err != nil {
		return fmt.Errorf("register: %w", err)
	}
	say("creating %d rooms and joining", l.cfg.rooms)
	l.roomID = make([]string, l.cfg.rooms)
	if err := parallel(ctx, l.cfg.rooms, conc, func(ctx context.Context, r int) error {
		id, err := l.users[l.members[r][0]].c.CreateRoom(ctx, fmt.Sprintf("%s room %d", l.prefix, r))
		l.roomID[r] = id
		return err
	}); err != nil {
		return fmt.Errorf("createRoom: %w", err)
	}
	if err := parallel(ctx, len(l.users), conc, func(ctx context.Context, i int) error {
		u := l.users[i]
		if l.members[u.room][0] == i {
			return nil // the creator
		}
		return u.c.join(ctx, l.roomID[u.room])
	}); err != nil {
		return fmt.Errorf("join: %w", err)
	}
	say("uploading filters and initial /sync")
	return parallel(ctx, len(l.users), conc, func(ctx context.Context, i int) error {
		u := l.users[i]
		f, err := u.c.uploadFilter(ctx)
		if err != nil {
			return fmt.Errorf("filter: %w", err)
		}
		u.filter = f
		data, err := u.c.Do(ctx, http.MethodGet, syncURL("", f, 0), nil)
		if err != nil {
			return fmt.Errorf("initial sync: %w", err)
		}
		var resp syncResponse
		if err := json.Unmarshal(data, &resp); err != nil || resp.NextBatch == "" {
			return fmt.Errorf("initial sync: no next_batch in %s", mxclient.Truncate(string(data), 200))
		}
		if _, ok := resp.Rooms.Join[l.roomID[u.room]]; !ok {
			return fmt.Errorf("initial sync of %s: room %s not joined", u.c.User, l.roomID[u.room])
		}
		u.since = resp.NextBatch
		return nil
	})
}

// syncLoop long-polls /sync for u until ctx ends, noting every message of
// this run it receives.
func (l *load) syncLoop(ctx context.Context, u *user) {
	timeoutMS := l.cfg.syncTimeout.Milliseconds()
	for ctx.Err() == nil {
		data, err := u.c.Do(ctx, http.MethodGet, syncURL(u.since, u.filter, timeoutMS), nil)
		recv := time.Now()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			l.recordError("GET /sync", err)
			select { // do not spin on a failing server
			case <-time.After(100 * time.Millisecond):
			case <-ctx.Done():
			}
			continue
		}
		l.syncs.Add(1)
		var resp syncResponse
		if err := json.Unmarshal(data, &resp); err != nil || resp.NextBatch == "" {
			l.recordError("GET /sync", fmt.Errorf("GET /sync: bad body (%v): %s", err, mxclient.Truncate(string(data), 200)))
			continue
		}
		u.since = resp.NextBatch
		for _, room := range resp.Rooms.Join {
			if room.Timeline.Limited {
				u.limited++
			}
			for _, ev := range room.Timeline.Events {
				if ev.Type != "m.room.message" {
					continue
				}
				sender, seq, ok := parseBody(ev.Content.Body, l.prefix)
				if !ok || sender >= len(l.users) || seq >= l.maxSeq {
					continue
				}
				got := u.received[sender]
				if got == nil {
					got = make([]bool, l.maxSeq)
					u.received[sender] = got
				}
				if got[seq] {
					u.dups++
					continue
				}
				got[seq] = true
				l.receivedTotal.Add(1)
				if start := l.users[sender].starts[seq].Load(); start != 0 {
					u.latencies = append(u.latencies, recv.Sub(time.Unix(0, start)))
				}
			}
		}
	}
}

// messageBody is the body of message seq of user idx in this run.
func messageBody(prefix string, idx, seq int) string {
	return prefix + ":" + strconv.Itoa(idx) + ":" + strconv.Itoa(seq)
}

// parseBody reverses messageBody; ok is false for any other body.
func parseBody(body, prefix string) (idx, seq int, ok bool) {
	rest, found := strings.CutPrefix(body, prefix+":")
	if !found {
		return 0, 0, false
	}
	a, b, found := strings.Cut(rest, ":")
	if !found {
		return 0, 0, false
	}
	idx, err1 := strconv.Atoi(a)
	seq, err2 := strconv.Atoi(b)
	if err1 != nil || err2 != nil || idx < 0 || seq < 0 {
		return 0, 0, false
	}
	return idx, seq, true
}

// sendLoop sends one message per interval until end, starting at the
// user's offset within the interval so sends are spread evenly. A send
// still running at the next tick makes that tick be skipped (one request
// at a time per user, as a client sends in order).
func (l *load) sendLoop(ctx context.Context, u *user, begin, end time.Time) {
	offset := l.cfg.interval * time.Duration(u.idx) / time.Duration(len(l.users))
	select {
	case <-time.After(time.Until(begin.Add(offset))):
	case <-ctx.Done():
		return
	}
	tick := time.NewTicker(l.cfg.interval)
	defer tick.Stop()
	roomID := l.roomID[u.room]
	for seq := 0; seq < l.maxSeq; seq++ {
		start := time.Now()
		if !start.Before(end) {
			return
		}
		u.starts[seq].Store(start.UnixNano())
		u.attempts++
		err := u.c.send(ctx, roomID, "t"+strconv.Itoa(seq), messageBody(l.prefix, u.idx, seq))
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			l.recordError("PUT /send", err)
		} else {
			u.ok[seq].Store(true)
			u.sendDur = append(u.sendDur, time.Since(start))
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return
		}
	}
}

// run sets up users and rooms, then sends for the configured duration
// while every user long-polls, drains, and builds the report.
func (l *load) run(ctx context.Context, say func(string, ...any)) (*report, error) {
	if err := l.setup(ctx, say); err != nil {
		return nil, err
	}
	syncCtx, stopSync := context.WithCancel(ctx)
	defer stopSync()
	var syncWG sync.WaitGroup
	for _, u := range l.users {
		syncWG.Go(func() { l.syncLoop(syncCtx, u) })
	}

	cpu0, err := l.proc.CPUSeconds()
	if err != nil {
		return nil, fmt.Errorf("server CPU: %w", err)
	}
	tool0 := selfCPU()
	busy0, total0, _ := machineCPU()
	syncs0 := l.syncs.Load()
	begin := time.Now().Add(50 * time.Millisecond)
	end := begin.Add(l.cfg.duration)
	say("sending for %s (%d users, %d rooms, every %s)", l.cfg.duration, len(l.users), l.cfg.rooms, l.cfg.interval)
	var sendWG sync.WaitGroup
	for _, u := range l.users {
		sendWG.Go(func() { l.sendLoop(ctx, u, begin, end) })
	}
	sendWG.Wait()
	sendEnd := time.Now()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}

	var expected, attempts, okSends int64
	for _, u := range l.users {
		attempts += int64(u.attempts)
		for seq := range u.attempts {
			if u.ok[seq].Load() {
				okSends++
				expected += int64(len(l.members[u.room]))
			}
		}
	}
	say("sent %d messages; waiting up to %s for %d deliveries", okSends, l.cfg.drain, expected)
	drainEnd := time.Now().Add(l.cfg.drain)
	for l.receivedTotal.Load() < expected && time.Now().Before(drainEnd) && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
	}
	windowEnd := time.Now()
	cpu1, err := l.proc.CPUSeconds()
	if err != nil {
		return nil, fmt.Errorf("server CPU: %w", err)
	}
	tool1 := selfCPU()
	busy1, total1, _ := machineCPU()
	syncs := l.syncs.Load() - syncs0
	stopSync()
	syncWG.Wait()
	l.hc.CloseIdleConnections()

	rep := &report{
		Database: databaseLabel(l.cfg.database),
		Users:    len(l.users), Rooms: l.cfg.rooms,
		Interval: l.cfg.interval.String(), Duration: l.cfg.duration.String(),
		Window:      windowEnd.Sub(begin).Seconds(),
		Machine:     machine(),
		SendsTarget: float64(len(l.users)) / l.cfg.interval.Seconds(),
		SendsPerSec: float64(attempts) / sendEnd.Sub(begin).Seconds(),
		SyncsPerSec: float64(syncs) / windowEnd.Sub(begin).Seconds(),
		SendsOK:     okSends,
		Expected:    expected,
		ServerCPU:   cpu1 - cpu0,
		ToolCPU:     tool1 - tool0,
		MachineBusy: busy1 - busy0,
		MachineCPU:  total1 - total0,
	}
	perUser := int64(l.cfg.duration / l.cfg.interval)
	if s := perUser*int64(len(l.users)) - attempts; s > 0 {
		rep.SkippedTicks = s
	}
	var lat, sendLat []time.Duration
	for _, u := range l.users {
		lat = append(lat, u.latencies...)
		sendLat = append(sendLat, u.sendDur...)
		rep.Duplicates += u.dups
		rep.Limited += u.limited
	}
	// Missing: every acknowledged message not received by some member.
	for _, s := range l.users {
		for seq := range s.attempts {
			if !s.ok[seq].Load() {
				continue
			}
			for _, m := range l.members[s.room] {
				if got := l.users[m].received[s.idx]; got == nil || !got[seq] {
					rep.Missing++
				}
			}
		}
	}
	rep.Delivery = summarise(lat)
	rep.Send = summarise(sendLat)
	l.errMu.Lock()
	rep.Errors, rep.ErrorsByKind, rep.ErrorSamples = l.errCount, l.errKinds, l.errSamples
	l.errMu.Unlock()
	return rep, nil
}

// selfCPU is this process's user+system CPU seconds so far.
func selfCPU() float64 {
	data, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return 0
	}
	v, _ := e2e.ParseProcStatCPU(data)
	return v
}

func numCPU() int { return runtime.NumCPU() }

func goVersion() string { return runtime.Version() }
