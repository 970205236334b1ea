package push

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/switchboard-chat/switchboard/homeserver/rooms"
	"github.com/switchboard-chat/switchboard/homeserver/storage"
	"github.com/switchboard-chat/switchboard/internal/clock"
)

// Push delivery (spec: Client-Server API, "Push Notifications", and the
// Push Gateway API, "POST /_matrix/push/v1/notify").
//
// A scanner follows the event stream from a cursor stored in the
// database, the same way the federation queue does: for every timeline
// event, local or received over federation, it evaluates the push rules
// of each local user who may see it and stores a notification row where
// the rules say "notify", moving the cursor in the same write. The
// notifications table is each pusher's durable queue: one goroutine per
// pusher sends the notifications after the pusher's last_pos to its
// gateway, retries with exponential backoff while the gateway is down,
// and moves last_pos on success. Nothing of this runs on the path that
// appends an event; it starts from the storage commit hook.

const (
	// scanBatch is how many events one scan reads.
	scanBatch = 200
	// sendBatch is how many notifications a sender reads at once.
	sendBatch = 50
	// requestTimeout bounds one request to a gateway.
	requestTimeout = 20 * time.Second
)

// Config is what a Manager needs.
type Config struct {
	// DB is the server's database: events, rules, pushers, notifications.
	DB *storage.DB
	// IsLocalUser reports whether a user ID is one of this server's.
	IsLocalUser func(userID string) bool
	// Clock times the retries and the slow rescan. Default the wall clock.
	Clock clock.Clock
	// RetryMin and RetryMax bound the exponential backoff while a
	// gateway is down.
	RetryMin, RetryMax time.Duration
	// DialControl, if set, vets every address a gateway request dials
	// (the server's deny table for outbound requests).
	DialControl func(network, address string, c syscall.RawConn) error
	// Resolver resolves gateway host names. Default net.DefaultResolver.
	Resolver *net.Resolver
}

// Manager evaluates rules and runs one sender per pusher.
type Manager struct {
	cfg    Config
	db     *storage.DB
	log    *slog.Logger
	client *http.Client
	kick   chan struct{}
	stop   chan struct{}
	wg     sync.WaitGroup
	// ctx ends at close, cutting in-flight requests short.
	ctx    context.Context
	cancel context.CancelFunc
	// cursor is the scanner's position (scanner goroutine only).
	cursor int64
	// globs caches compiled push rule patterns.
	globs globCache

	mu sync.Mutex // guards senders and stopped
	// senders holds one running sender per pusher (user, app ID, pushkey).
	senders map[pusherKey]*sender
	stopped bool
}

type pusherKey struct{ user, appID, pushkey string }

type sender struct {
	key  pusherKey
	wake chan struct{}
}

// New returns a Manager; Start runs it.
func New(cfg Config, log *slog.Logger) (*Manager, error) {
	if cfg.DB == nil || cfg.IsLocalUser == nil {
		return nil, ErrConfig
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real()
	}
	if cfg.RetryMin <= 0 || cfg.RetryMax < cfg.RetryMin {
		return nil, fmt.Errorf("%w: retry bounds %v..%v", ErrConfig, cfg.RetryMin, cfg.RetryMax)
	}
	if log == nil {
		log = slog.Default()
	}
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second, Control: cfg.DialControl, Resolver: cfg.Resolver}
	client := &http.Client{
		Transport: &http.Transport{
			DialContext:           dialer.DialContext,
			ForceAttemptHTTP2:     true,
			MaxIdleConnsPerHost:   4,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   10 * time.Second,
			ResponseHeaderTimeout: requestTimeout,
		},
		Timeout: requestTimeout,
		// A gateway answers in place; following redirects would let it
		// point us anywhere.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Manager{
		cfg: cfg, db: cfg.DB, log: log.With("component", "push"), client: client,
		kick: make(chan struct{}, 1), stop: make(chan struct{}),
		ctx: ctx, cancel: cancel, cursor: -1, senders: make(map[pusherKey]*sender),
	}, nil
}

// Start runs the scanner and a sender for every stored pusher (so a
// backlog left by a restart or an outage is sent).
func (m *Manager) Start(ctx context.Context) error {
	if _, err := m.db.PushCursor(ctx); err != nil {
		return err
	}
	pushers, err := m.db.Pushers(ctx, "")
	if err != nil {
		return err
	}
	m.wg.Add(1)
	go m.scanLoop()
	for _, p := range pushers {
		m.wakeSender(pusherKey{p.UserID, p.AppID, p.Pushkey})
	}
	m.kickScan()
	return nil
}

// Close stops the scanner and the senders and waits for them.
func (m *Manager) Close() {
	if m == nil {
		return
	}
	m.mu.Lock()
	if m.stopped {
		m.mu.Unlock()
		return
	}
	m.stopped = true
	close(m.stop)
	m.cancel()
	m.mu.Unlock()
	m.wg.Wait()
	m.client.CloseIdleConnections()
}

// Committed is called from the storage commit hook: a write touching a
// room may have appended an event.
func (m *Manager) Committed(keys []string) {
	if m == nil {
		return
	}
	for _, k := range keys {
		if strings.HasPrefix(k, "!") {
			m.kickScan()
			return
		}
	}
}

func (m *Manager) kickScan() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// Wake makes a pusher's sender look for work (a pusher was set), starting
// it if needed.
func (m *Manager) Wake(userID, appID, pushkey string) {
	m.wakeSender(pusherKey{userID, appID, pushkey})
}

func (m *Manager) wakeSender(k pusherKey) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stopped {
		return
	}
	ps, ok := m.senders[k]
	if !ok {
		ps = &sender{key: k, wake: make(chan struct{}, 1)}
		m.senders[k] = ps
		m.wg.Add(1)
		go m.sendLoop(ps)
	}
	select {
	case ps.wake <- struct{}{}:
	default:
	}
}

// wakeUser wakes the senders of a user's pushers.
func (m *Manager) wakeUser(ctx context.Context, userID string) error {
	ps, err := m.db.Pushers(ctx, userID)
	if err != nil {
		return err
	}
	for _, p := range ps {
		m.wakeSender(pusherKey{p.UserID, p.AppID, p.Pushkey})
	}
	return nil
}

func (m *Manager) scanLoop() {
	defer m.wg.Done()
	// A slow tick covers a kick lost to an error.
	tick := m.cfg.Clock.NewTicker(30 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-m.kick:
		case <-tick.C():
		}
		for {
			more, err := m.scanOnce()
			if err != nil {
				if m.ctx.Err() == nil {
					m.log.Warn("push rule scan failed", "err", err)
				}
				break
			}
			if !more {
				break
			}
		}
	}
}

// scanOnce evaluates the events after the cursor; more reports a full
// batch.
func (m *Manager) scanOnce() (more bool, err error) {
	ctx, cancel := context.WithTimeout(m.ctx, 30*time.Second)
	defer cancel()
	db := m.db
	if m.cursor < 0 {
		if m.cursor, err = db.PushCursor(ctx); err != nil {
			m.cursor = -1
			return false, err
		}
	}
	evs, err := db.EventsAfter(ctx, m.cursor, scanBatch)
	if err != nil || len(evs) == 0 {
		return false, err
	}
	var ns []storage.Notification
	for _, e := range evs {
		got, err := m.evaluate(ctx, e)
		if err != nil {
			return false, err
		}
		ns = append(ns, got...)
	}
	last := evs[len(evs)-1].Pos
	if err := db.AddNotifications(ctx, ns, last); err != nil {
		return false, err
	}
	m.cursor = last
	woken := map[string]bool{}
	for _, n := range ns {
		if !woken[n.UserID] {
			woken[n.UserID] = true
			if err := m.wakeUser(ctx, n.UserID); err != nil {
				return false, err
			}
		}
	}
	return len(evs) == scanBatch, nil
}

// evaluate returns the notifications an event gives local users: joined
// members other than the sender, and the target of an invite.
func (m *Manager) evaluate(ctx context.Context, e storage.Event) ([]storage.Notification, error) {
	if e.RedactedBy != "" {
		return nil, nil
	}
	db := m.db
	members, err := db.Members(ctx, e.RoomID, "join")
	if err != nil {
		return nil, err
	}
	targets := make([]string, 0, len(members)+1)
	for _, u := range members {
		if u != e.Sender && m.cfg.IsLocalUser(u) {
			targets = append(targets, u)
		}
	}
	if e.Type == spec.MRoomMember && e.StateKey != nil && *e.StateKey != e.Sender && m.cfg.IsLocalUser(*e.StateKey) {
		if membershipOf(e.JSON) == spec.Invite {
			targets = append(targets, *e.StateKey)
		}
	}
	if len(targets) == 0 {
		return nil, nil
	}
	pe, err := newRuleEvent(e.JSON)
	if err != nil {
		return nil, nil // stored events are valid JSON; skip rather than stall
	}
	ec := eventCtx{memberCount: len(members), globs: &m.globs}
	if ec.senderPower, ec.notifLevels, err = m.powerOf(ctx, e.RoomID, e.Sender); err != nil {
		return nil, err
	}
	var out []storage.Notification
	for _, u := range targets {
		rs, err := Load(ctx, m.db, u)
		if err != nil {
			return nil, err
		}
		uc := ec
		if uc.displayName, err = m.roomDisplayName(ctx, e.RoomID, u); err != nil {
			return nil, err
		}
		o := evaluateRules(&rs, pe, &uc)
		if !o.notify {
			continue
		}
		out = append(out, storage.Notification{UserID: u, Pos: e.Pos, RoomID: e.RoomID, EventID: e.EventID,
			TS: e.OriginTS, Actions: o.actions, Highlight: o.highlight})
	}
	return out, nil
}

// membershipOf reads content.membership of an event.
func membershipOf(js []byte) string {
	var ev struct {
		Content struct {
			Membership string `json:"membership"`
		} `json:"content"`
	}
	_ = json.Unmarshal(js, &ev)
	return ev.Content.Membership
}

// powerOf returns a user's power level in a room and the room's
// notification levels (spec: "m.room.power_levels"; without the event,
// the room creator has 100 and everyone else 0).
func (m *Manager) powerOf(ctx context.Context, roomID, userID string) (int64, map[string]int64, error) {
	pl, err := rooms.CurrentPowerLevels(ctx, m.db, roomID)
	if err != nil {
		return 0, nil, err
	}
	return pl.UserLevel(spec.SenderID(userID)), pl.Notifications, nil
}

// roomDisplayName is a user's display name in a room, from their member
// event ("" when none).
func (m *Manager) roomDisplayName(ctx context.Context, roomID, userID string) (string, error) {
	ev, err := m.db.CurrentStateEvent(ctx, roomID, spec.MRoomMember, userID)
	if errors.Is(err, storage.ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	var mem struct {
		Content struct {
			DisplayName string `json:"displayname"`
		} `json:"content"`
	}
	_ = json.Unmarshal(ev.JSON, &mem)
	return mem.Content.DisplayName, nil
}
