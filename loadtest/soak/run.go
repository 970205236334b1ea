package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard-chat/switchboard/bench/calls/callclient"
	"github.com/switchboard-chat/switchboard/internal/testkit"
	"github.com/switchboard-chat/switchboard/loadtest/mxclient"
)

// config is the command line of a soak run.
type config struct {
	duration    time.Duration
	sample      time.Duration
	settle      time.Duration
	database    string
	serverBin   string
	out         string
	users       int
	rooms       int
	fedUsers    int
	msgInterval time.Duration
	churnEvery  time.Duration
	callEvery   time.Duration
	groupRooms  int
	groupSize   int
	groupHold   time.Duration
	logLevel    string
	keep        bool
}

// result is what a run measured.
type result struct {
	Samples     []sample
	Baseline    sample
	Final       sample
	Requests    int64
	Acked       int64
	Undelivered int
	Delivery    delivery
	Errors      map[string]int
	ErrSamples  []string
	Churned     int64
	Calls       struct{ Placed, Completed, Vanished, PacketsSent, PacketsGot int64 }
	Group       struct{ Calls, Joins, Vanished, Failed int64 }
	Verdict     []check
	LoadEnd     float64
	ScrapeErrs  int
}

// mix holds everything the load phase runs against.
type mix struct {
	cfg       config
	a, b      *server
	cnt       counters
	led       ledger
	rooms     []string // on server A
	fedRooms  map[string]bool
	witA      map[string]*witness // room → witness on A
	witB      *witness            // the federated witness, on B
	chatA     []*client
	chatB     []*client
	callPairs [][2]*callUser
	callRoom  []string
	groups    []*groupRoom
	cstats    callStats
	gstats    groupStats
	churned   atomic.Int64
}

// run executes one soak: servers up, setup, load, settle, verdict. The
// binary must already exist (cfg.serverBin).
func run(ctx context.Context, cfg config, progress io.Writer) (*result, error) {
	say := func(format string, args ...any) { fmt.Fprintf(progress, "soak: "+format+"\n", args...) }
	if err := os.MkdirAll(cfg.out, 0o755); err != nil {
		return nil, err
	}
	// The servers' data directories; with -keep in -out, for a look at the
	// databases after the run.
	var err error
	tmp := filepath.Join(cfg.out, "data")
	if !cfg.keep {
		if tmp, err = os.MkdirTemp("", "switchboard-soak-*"); err != nil {
			return nil, err
		}
		defer os.RemoveAll(tmp)
	}

	m := &mix{cfg: cfg, fedRooms: map[string]bool{}, witA: map[string]*witness{}}
	if m.a, err = startServer(ctx, cfg.serverBin, filepath.Join(tmp, "a"), cfg.database, filepath.Join(cfg.out, "server-a.log"), cfg.logLevel); err != nil {
		return nil, err
	}
	defer m.a.proc.Kill()
	// The second server is federation traffic only; it keeps SQLite.
	if m.b, err = startServer(ctx, cfg.serverBin, filepath.Join(tmp, "b"), "", filepath.Join(cfg.out, "server-b.log"), cfg.logLevel); err != nil {
		return nil, err
	}
	defer m.b.proc.Kill()
	say("server A %s (pid %d, metrics %s), server B %s", m.a.name, m.a.proc.Pid(), m.a.proc.MetricsURL(), m.b.name)

	smp := &sampler{url: m.a.proc.MetricsURL() + "/metrics", hc: newHTTPClients().hc, start: time.Now()}
	smp.setPhase("start")
	setupHC := newHTTPClients()
	if err := m.setup(ctx, setupHC, say); err != nil {
		return nil, err
	}
	setupHC.close()
	for _, c := range m.allClients() {
		closeIdle(c)
	}
	// The start values: after setup, before any load, with no client
	// connection open.
	if err := testkit.Poll(ctx, func() bool { _, err := smp.once(ctx); return err == nil }); err != nil {
		return nil, err
	}
	// The server notices closed connections a moment later: the start
	// values are taken once goroutines hold still for two samples (at most
	// 10 s).
	res := &result{}
	prev := smp.snapshot()[len(smp.snapshot())-1]
	for i := 0; i < 20; i++ {
		sleepCtx(ctx, 500*time.Millisecond)
		cur, err := smp.once(ctx)
		if err != nil {
			return nil, err
		}
		stable := cur.Values[metricIndex("goroutines")] == prev.Values[metricIndex("goroutines")]
		prev = cur
		if stable {
			break
		}
	}
	res.Baseline = prev
	say("baseline: %s", describe(res.Baseline))
	profile := func(name string) {
		if err := saveProfile(ctx, smp.hc, m.a.proc.MetricsURL(), filepath.Join(cfg.out, name)); err != nil {
			say("profile %s: %v", name, err)
		}
	}
	profile("heap-start.pb.gz")
	profile("goroutine-start.txt")

	smp.setPhase("load")
	sctx, stopSampling := context.WithCancel(ctx)
	var swg sync.WaitGroup
	swg.Add(1)
	go func() { defer swg.Done(); smp.loop(sctx, cfg.sample) }()

	say("load for %s", cfg.duration)
	loadCtx, stopLoad := context.WithTimeout(ctx, cfg.duration)
	witCtx, stopWitnesses := context.WithCancel(ctx)
	wwg := m.startWitnesses(witCtx)
	m.load(loadCtx)
	stopLoad()
	res.LoadEnd = time.Since(smp.start).Seconds()
	profile("heap-load-end.pb.gz")
	say("load stopped; checking delivery")
	smp.setPhase("drain")
	res.Undelivered = m.awaitDelivery(ctx, 30*time.Second)
	if res.Undelivered > 0 {
		// Not a verdict, a figure: late, or lost for good?
		say("%d pairs missing after 30 s; waiting up to %s more", res.Undelivered, extraDrain)
		_ = m.awaitDelivery(ctx, extraDrain)
	}
	stopWitnesses()
	wwg.Wait()
	res.Delivery = m.deliveryReport(ctx, res.Undelivered)
	say("delivery: %s", res.Delivery)
	for _, c := range m.allClients() {
		closeIdle(c)
	}
	smp.setPhase("settle")
	say("waiting up to %s for the server to settle", cfg.settle)
	settleCtx, stopSettle := context.WithTimeout(ctx, cfg.settle)
	// The end values are those of the first sample after the load with
	// every settling metric back within tolerance: a leak never gets
	// there, while a single later sample can catch a burst of short-lived
	// goroutines (server B still delivering its federation backlog to A
	// spawns dozens per transaction). If none got there, a fresh sample.
	var back *sample
	_ = testkit.Poll(settleCtx, func() bool {
		s := smp.snapshot()
		if len(s) > 0 && s[len(s)-1].T > res.LoadEnd && settled(res.Baseline, s[len(s)-1]) {
			back = &s[len(s)-1]
		}
		return back != nil
	})
	stopSettle()
	final, err := smp.once(ctx)
	stopSampling()
	swg.Wait()
	if err != nil {
		return nil, err
	}
	res.Final = final
	if back != nil {
		res.Final = *back
	}
	profile("heap-settled.pb.gz")
	profile("goroutine-settled.txt")
	res.Samples = smp.snapshot()
	res.ScrapeErrs = smp.errs

	res.Requests, res.Acked = m.cnt.requests.Load(), m.cnt.acked.Load()
	m.cnt.mu.Lock()
	res.Errors, res.ErrSamples = m.cnt.errs, m.cnt.samples
	m.cnt.mu.Unlock()
	res.Churned = m.churned.Load()
	res.Calls.Placed, res.Calls.Completed, res.Calls.Vanished = m.cstats.placed.Load(), m.cstats.completed.Load(), m.cstats.vanished.Load()
	res.Calls.PacketsSent, res.Calls.PacketsGot = m.cstats.packetsSent.Load(), m.cstats.packetsGot.Load()
	res.Group.Calls, res.Group.Joins, res.Group.Vanished, res.Group.Failed = m.gstats.calls.Load(), m.gstats.joins.Load(), m.gstats.vanished.Load(), m.gstats.failed.Load()

	for _, s := range []*server{m.b, m.a} {
		if err := s.stop(); err != nil {
			m.cnt.fail(context.Background(), "shutdown", err)
			res.Errors = m.cnt.errs
		}
	}
	res.Verdict = verdict(res)
	if err := writeOutputs(cfg.out, res); err != nil {
		return res, err
	}
	return res, nil
}

// setup registers the standing users, creates the rooms, joins users of
// server B to half of them over federation, and prepares the call users
// and group-call rooms.
func (m *mix) setup(ctx context.Context, hcs *httpClients, say func(string, ...any)) error {
	cfg := m.cfg
	baseA, baseB := m.a.proc.ClientURL(), m.b.proc.ClientURL()
	reg := func(base, name string) (*client, error) {
		c := &client{mxclient.Client{Base: base, HC: newHTTPClients().hc}}
		return c, c.Register(ctx, name, "soak password "+name)
	}
	for i := 0; i < cfg.users; i++ {
		c, err := reg(baseA, fmt.Sprintf("user%d", i))
		if err != nil {
			return err
		}
		m.chatA = append(m.chatA, c)
	}
	for i := 0; i < cfg.rooms; i++ {
		owner := m.chatA[i%len(m.chatA)]
		room, err := owner.CreateRoom(ctx, fmt.Sprintf("soak room %d", i))
		if err != nil {
			return err
		}
		m.rooms = append(m.rooms, room)
		m.witA[room] = newWitness(owner)
	}
	for i, c := range m.chatA {
		if err := c.join(ctx, m.rooms[i%len(m.rooms)]); err != nil {
			return err
		}
	}
	witB, err := reg(baseB, "witness")
	if err != nil {
		return err
	}
	m.witB = newWitness(witB)
	for i := 0; i < cfg.fedUsers; i++ {
		c, err := reg(baseB, fmt.Sprintf("remote%d", i))
		if err != nil {
			return err
		}
		m.chatB = append(m.chatB, c)
	}
	for i, room := range m.rooms {
		if i%2 == 1 || len(m.chatB) == 0 {
			continue
		}
		m.fedRooms[room] = true
		if err := witB.join(ctx, room, m.a.name); err != nil {
			return fmt.Errorf("federated join of %s: %w", room, err)
		}
	}
	for i, c := range m.chatB {
		fr := m.federatedRooms()
		if err := c.join(ctx, fr[i%len(fr)], m.a.name); err != nil {
			return fmt.Errorf("federated join: %w", err)
		}
	}
	say("%d users on A in %d rooms, %d on B in %d federated rooms", len(m.chatA), len(m.rooms), len(m.chatB)+1, len(m.federatedRooms()))

	// 1:1 calls: one pair on A, one pair across the two servers.
	newCallUser := func(s *server, name string) (*callUser, error) {
		c, err := reg(s.proc.ClientURL(), name)
		return &callUser{cli: c, turnAddr: s.proc.Addrs.TURNUDP, events: make(chan callEvent, 64)}, err
	}
	for i, srvB := range []*server{m.a, m.b} {
		caller, err := newCallUser(m.a, fmt.Sprintf("caller%d", i))
		if err != nil {
			return err
		}
		callee, err := newCallUser(srvB, fmt.Sprintf("callee%d", i))
		if err != nil {
			return err
		}
		room, err := caller.cli.CreateRoom(ctx, fmt.Sprintf("soak call %d", i))
		if err != nil {
			return err
		}
		if err := callee.cli.join(ctx, room, m.a.name); err != nil {
			return fmt.Errorf("call room join: %w", err)
		}
		m.callPairs = append(m.callPairs, [2]*callUser{caller, callee})
		m.callRoom = append(m.callRoom, room)
	}

	// Group calls through the native focus of server A.
	server := m.chatA[0].User[len("@user0:"):]
	focus := callclient.Focus{UserID: "@switchboard:" + server, DeviceID: "SFU"}
	for i := 0; i < cfg.groupRooms; i++ {
		g := &groupRoom{conf: fmt.Sprintf("soakconf%d", i), focus: focus}
		for j := 0; j < cfg.groupSize; j++ {
			cli, err := callclient.Register(ctx, baseA, fmt.Sprintf("gc%d_%d", i, j), "soak group password", newHTTPClients().hc)
			if err != nil {
				return err
			}
			g.users = append(g.users, cli)
		}
		room, err := callclient.CreateCallRoom(ctx, g.users[0], g.conf, focus)
		if err != nil {
			return err
		}
		g.room = room
		m.groups = append(m.groups, g)
	}
	return nil
}

// allClients are the standing users' clients.
func (m *mix) allClients() []*client {
	out := append(append([]*client(nil), m.chatA...), m.chatB...)
	out = append(out, m.witB.cli)
	for _, p := range m.callPairs {
		out = append(out, p[0].cli, p[1].cli)
	}
	return out
}

// closeIdle closes the idle keep-alive connections of c's pool.
func closeIdle(c *client) {
	if tr, ok := c.HC.Transport.(interface{ CloseIdleConnections() }); ok {
		tr.CloseIdleConnections()
	}
}

func (m *mix) federatedRooms() []string {
	var out []string
	for _, r := range m.rooms {
		if m.fedRooms[r] {
			out = append(out, r)
		}
	}
	return out
}

// startWitnesses starts the delivery witnesses' and the call users'
// /sync loops.
func (m *mix) startWitnesses(ctx context.Context) *sync.WaitGroup {
	var wg sync.WaitGroup
	goSync := func(c *client, on func(*syncResponse)) {
		wg.Add(1)
		go func() { defer wg.Done(); syncLoop(ctx, c, &m.cnt, 10000, on) }()
	}
	seen := map[*witness]bool{}
	for _, w := range m.witA {
		if !seen[w] {
			seen[w] = true
			goSync(w.cli, w.recorder(ctx, &m.cnt))
		}
	}
	goSync(m.witB.cli, m.witB.recorder(ctx, &m.cnt))
	for _, p := range m.callPairs {
		for _, u := range p {
			goSync(u.cli, u.onSync)
		}
	}
	return &wg
}

// load runs the mix until ctx ends.
func (m *mix) load(ctx context.Context) {
	var wg sync.WaitGroup
	spawn := func(f func()) {
		wg.Add(1)
		go func() { defer wg.Done(); f() }()
	}
	for i, c := range m.chatA {
		rooms := []string{m.rooms[i%len(m.rooms)]}
		if c == m.witA[rooms[0]].cli {
			continue // witnesses only read; their /sync runs separately
		}
		spawn(func() { chatter(ctx, c, rooms, m.cfg.msgInterval, &m.cnt, &m.led) })
	}
	fr := m.federatedRooms()
	for i, c := range m.chatB {
		rooms := []string{fr[i%len(fr)]}
		spawn(func() { chatter(ctx, c, rooms, m.cfg.msgInterval, &m.cnt, &m.led) })
	}
	spawn(func() {
		churner(ctx, m.a.proc.ClientURL(), newHTTPClients, m.rooms, m.cfg.churnEvery, &m.cnt, &m.led, &m.churned)
	})
	for i, pair := range m.callPairs {
		spawn(func() {
			for n := 0; ctx.Err() == nil; n++ {
				_ = oneToOne(ctx, pair[0], pair[1], m.callRoom[i], n%4 == 3, &m.cstats, &m.cnt)
				sleepCtx(ctx, m.cfg.callEvery)
			}
		})
	}
	for _, g := range m.groups {
		spawn(func() {
			for n := 0; ctx.Err() == nil; n++ {
				vanish := -1
				if n%2 == 1 {
					vanish = rand.IntN(len(g.users))
				}
				_ = groupCall(ctx, g, m.cfg.groupHold, vanish, &m.gstats, &m.cnt)
				sleepCtx(ctx, time.Second)
			}
		})
	}
	wg.Wait()
}

// awaitDelivery waits up to timeout for the witnesses to have seen every
// acknowledged message and returns how many they have not.
func (m *mix) awaitDelivery(ctx context.Context, timeout time.Duration) int {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	missing := func() int {
		n := 0
		for _, p := range m.pairs() {
			if !p.w.has(p.room, p.eventID) {
				n++
			}
		}
		return n
	}
	_ = testkit.Poll(ctx, func() bool { return missing() == 0 })
	return missing()
}

// pair is one acknowledged message and one witness that must see it.
type pair struct {
	acked
	w *witness
}

// pairs lists every (message, witness) pair the run must deliver.
func (m *mix) pairs() []pair {
	var out []pair
	for _, a := range m.led.all() {
		out = append(out, pair{a, m.witA[a.room]})
		if m.fedRooms[a.room] {
			out = append(out, pair{a, m.witB})
		}
	}
	return out
}

// deliveryReport measures how late the witnesses saw each message and,
// for each they never saw, whether their server holds it.
func (m *mix) deliveryReport(ctx context.Context, after30 int) delivery {
	d := delivery{MissingByRoute: map[string]int{}, LateByRoute: map[string]int{}, After30: after30}
	srv := func(base string) string {
		if base == m.a.proc.ClientURL() {
			return "A"
		}
		return "B"
	}
	ws := map[*witness]bool{m.witB: true}
	for _, w := range m.witA {
		ws[w] = true
	}
	for w := range ws {
		d.Limited += w.limited.Load()
		d.Paged += w.paged.Load()
		d.PageErrors += w.pageErr.Load()
	}
	for _, p := range m.pairs() {
		route := srv(p.base) + "→" + srv(p.w.cli.Base)
		at := p.w.seenAt(p.room, p.eventID)
		if !at.IsZero() {
			delay := at.Sub(p.at)
			d.MaxDelay = max(d.MaxDelay, delay.Seconds())
			if delay > lateAfter {
				d.Late++
				d.LateByRoute[route]++
			}
			continue
		}
		d.Missing++
		d.MissingByRoute[route]++
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		ok, err := p.w.stored(cctx, p.room, p.eventID)
		cancel()
		switch {
		case err != nil:
			d.MissingUnknown++
		case ok:
			d.MissingStored++
		default:
			d.MissingAbsent++
		}
		if len(d.MissingSamples) < 10 {
			d.MissingSamples = append(d.MissingSamples, fmt.Sprintf("%s %s in %s for %s (acked %s, held by the witness's server %v, err %v)",
				route, p.eventID, p.room, p.w.cli.User, p.at.UTC().Format(time.TimeOnly), ok, err))
		}
	}
	return d
}

func (d delivery) String() string {
	return fmt.Sprintf("%d pairs missing 30 s after the load, %d of them for good (%s more) %v (%d held by the witness's server, %d not, %d unknown); %d late (> %s) %v, max delay %.1f s; %d limited timelines paged, %d events found by paging, %d page errors",
		d.After30, d.Missing, extraDrain, d.MissingByRoute, d.MissingStored, d.MissingAbsent, d.MissingUnknown, d.Late, lateAfter, d.LateByRoute, d.MaxDelay, d.Limited, d.Paged, d.PageErrors)
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// saveProfile writes one of server A's profiles to path: the heap profile
// (/debug/pprof/heap, after a garbage collection) for a name starting
// "heap" (compare two with `go tool pprof -base heap-start.pb.gz
// heap-settled.pb.gz`), else the goroutine stacks as text
// (/debug/pprof/goroutine?debug=1, grouped by stack with counts).
func saveProfile(ctx context.Context, hc *http.Client, metricsURL, path string) error {
	u := metricsURL + "/debug/pprof/goroutine?debug=1"
	if strings.HasPrefix(filepath.Base(path), "heap") {
		u = metricsURL + "/debug/pprof/heap?gc=1"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w: %s answered %s", ErrScrape, u, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
