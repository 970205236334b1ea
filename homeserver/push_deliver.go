package homeserver

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/switchboard-chat/switchboard/homeserver/federation"
	"github.com/switchboard-chat/switchboard/homeserver/rooms"
	"github.com/switchboard-chat/switchboard/homeserver/storage"
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
	// pushScanBatch is how many events one scan reads.
	pushScanBatch = 200
	// pushSendBatch is how many notifications a sender reads at once.
	pushSendBatch = 50
	// pushRequestTimeout bounds one request to a gateway.
	pushRequestTimeout = 20 * time.Second
)

// pushManager evaluates rules and runs one sender per pusher.
type pushManager struct {
	s      *Server
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
	senders map[pusherKey]*pushSender
	stopped bool
}

type pusherKey struct{ user, appID, pushkey string }

type pushSender struct {
	key  pusherKey
	wake chan struct{}
}

func newPushManager(s *Server) (*pushManager, error) {
	policy, err := federation.NewAddrPolicy(s.cfg.Push.AllowNetworks)
	if err != nil {
		return nil, err
	}
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second, Control: policy.Control, Resolver: s.cfg.Federation.Resolver}
	client := &http.Client{
		Transport: &http.Transport{
			DialContext:           dialer.DialContext,
			ForceAttemptHTTP2:     true,
			MaxIdleConnsPerHost:   4,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   10 * time.Second,
			ResponseHeaderTimeout: pushRequestTimeout,
		},
		Timeout: pushRequestTimeout,
		// A gateway answers in place; following redirects would let it
		// point us anywhere.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &pushManager{
		s: s, log: s.log.With("component", "push"), client: client,
		kick: make(chan struct{}, 1), stop: make(chan struct{}),
		ctx: ctx, cancel: cancel, cursor: -1, senders: make(map[pusherKey]*pushSender),
	}, nil
}

// start runs the scanner and a sender for every stored pusher (so a
// backlog left by a restart or an outage is sent).
func (m *pushManager) start(ctx context.Context) error {
	if _, err := m.s.db.PushCursor(ctx); err != nil {
		return err
	}
	pushers, err := m.s.db.Pushers(ctx, "")
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

// close stops the scanner and the senders and waits for them.
func (m *pushManager) close() {
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

// committed is called from the storage commit hook: a write touching a
// room may have appended an event.
func (m *pushManager) committed(keys []string) {
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

func (m *pushManager) kickScan() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// wakeSender makes a pusher's sender look for work, starting it if needed.
func (m *pushManager) wakeSender(k pusherKey) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stopped {
		return
	}
	ps, ok := m.senders[k]
	if !ok {
		ps = &pushSender{key: k, wake: make(chan struct{}, 1)}
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
func (m *pushManager) wakeUser(ctx context.Context, userID string) error {
	ps, err := m.s.db.Pushers(ctx, userID)
	if err != nil {
		return err
	}
	for _, p := range ps {
		m.wakeSender(pusherKey{p.UserID, p.AppID, p.Pushkey})
	}
	return nil
}

func (m *pushManager) scanLoop() {
	defer m.wg.Done()
	// A slow tick covers a kick lost to an error.
	tick := time.NewTicker(30 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-m.kick:
		case <-tick.C:
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
func (m *pushManager) scanOnce() (more bool, err error) {
	ctx, cancel := context.WithTimeout(m.ctx, 30*time.Second)
	defer cancel()
	db := m.s.db
	if m.cursor < 0 {
		if m.cursor, err = db.PushCursor(ctx); err != nil {
			m.cursor = -1
			return false, err
		}
	}
	evs, err := db.EventsAfter(ctx, m.cursor, pushScanBatch)
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
	return len(evs) == pushScanBatch, nil
}

// evaluate returns the notifications an event gives local users: joined
// members other than the sender, and the target of an invite.
func (m *pushManager) evaluate(ctx context.Context, e storage.Event) ([]storage.Notification, error) {
	if e.RedactedBy != "" {
		return nil, nil
	}
	db := m.s.db
	members, err := db.Members(ctx, e.RoomID, "join")
	if err != nil {
		return nil, err
	}
	targets := make([]string, 0, len(members)+1)
	for _, u := range members {
		if u != e.Sender && m.s.isLocal(u) {
			targets = append(targets, u)
		}
	}
	if e.Type == spec.MRoomMember && e.StateKey != nil && *e.StateKey != e.Sender && m.s.isLocal(*e.StateKey) {
		if membershipOfJSON(e.JSON) == spec.Invite {
			targets = append(targets, *e.StateKey)
		}
	}
	if len(targets) == 0 {
		return nil, nil
	}
	pe, err := newPushEvent(e.JSON)
	if err != nil {
		return nil, nil // stored events are valid JSON; skip rather than stall
	}
	ec := pushEventCtx{memberCount: len(members), globs: &m.globs}
	if ec.senderPower, ec.notifLevels, err = m.powerOf(ctx, e.RoomID, e.Sender); err != nil {
		return nil, err
	}
	var out []storage.Notification
	for _, u := range targets {
		rs, err := m.s.pushRules(ctx, u)
		if err != nil {
			return nil, err
		}
		uc := ec
		if uc.displayName, err = m.roomDisplayName(ctx, e.RoomID, u); err != nil {
			return nil, err
		}
		o := evaluatePushRules(&rs, pe, &uc)
		if !o.notify {
			continue
		}
		out = append(out, storage.Notification{UserID: u, Pos: e.Pos, RoomID: e.RoomID, EventID: e.EventID,
			TS: e.OriginTS, Actions: o.actions, Highlight: o.highlight})
	}
	return out, nil
}

// membershipOfJSON reads content.membership of an event.
func membershipOfJSON(js []byte) string {
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
func (m *pushManager) powerOf(ctx context.Context, roomID, userID string) (int64, map[string]int64, error) {
	pl, err := rooms.CurrentPowerLevels(ctx, m.s.db, roomID)
	if err != nil {
		return 0, nil, err
	}
	return pl.UserLevel(spec.SenderID(userID)), pl.Notifications, nil
}

// roomDisplayName is a user's display name in a room, from their member
// event ("" when none).
func (m *pushManager) roomDisplayName(ctx context.Context, roomID, userID string) (string, error) {
	ev, err := m.s.db.CurrentStateEvent(ctx, roomID, spec.MRoomMember, userID)
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
