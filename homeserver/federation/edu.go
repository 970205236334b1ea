package federation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/matrix-org/gomatrixserverlib"

	"github.com/switchboard-chat/switchboard/homeserver/storage"
)

// EDUs about users rather than rooms: device list updates, cross-signing
// key updates and presence (spec: Server-Server API, "Device Management"
// and "Presence").

// EDU types handled here.
const (
	eduDeviceListUpdate = "m.device_list_update"
	eduSigningKeyUpdate = "m.signing_key_update"
	eduPresence         = "m.presence"
)

// errBadEDU is returned by the EDU parsers; receiveEDU logs it and drops
// the EDU.
var errBadEDU = errors.New("homeserver: federation: bad EDU")

// maxPresencePush bounds the entries of one m.presence EDU applied (each
// costs a query of the rooms the user shares with ours).
const maxPresencePush = 100

// deviceListUpdate is the content of an m.device_list_update EDU (spec:
// Server-Server API, "Device Management", m.device_list_update).
type deviceListUpdate struct {
	UserID      string          `json:"user_id"`
	DeviceID    string          `json:"device_id"`
	DisplayName string          `json:"device_display_name,omitempty"`
	StreamID    int64           `json:"stream_id"`
	PrevID      []int64         `json:"prev_id"`
	Deleted     bool            `json:"deleted,omitempty"`
	Keys        json.RawMessage `json:"keys,omitempty"`
}

// parseDeviceListUpdate reads an m.device_list_update EDU from origin: the
// user must be one of origin's, the device ID present, the keys (if any)
// an object.
func parseDeviceListUpdate(origin string, content []byte) (deviceListUpdate, error) {
	var u deviceListUpdate
	if err := json.Unmarshal(content, &u); err != nil {
		return u, fmt.Errorf("%w: %v", errBadEDU, err)
	}
	if _, server, ok := splitUserID(u.UserID); !ok || server != origin {
		return u, fmt.Errorf("%w: user %q is not of server %q", errBadEDU, u.UserID, origin)
	}
	if u.DeviceID == "" || len(u.DeviceID) > 255 {
		return u, fmt.Errorf("%w: bad device_id", errBadEDU)
	}
	if u.StreamID < 0 {
		return u, fmt.Errorf("%w: negative stream_id", errBadEDU)
	}
	if k := strings.TrimSpace(string(u.Keys)); k != "" && k != "null" && k[0] != '{' {
		return u, fmt.Errorf("%w: keys is not an object", errBadEDU)
	}
	return u, nil
}

// parseSigningKeyUpdate reads an m.signing_key_update EDU from origin
// (spec: Server-Server API, "End-to-End Encryption", m.signing_key_update)
// and returns its user.
func parseSigningKeyUpdate(origin string, content []byte) (string, error) {
	var u struct {
		UserID string `json:"user_id"`
	}
	if err := json.Unmarshal(content, &u); err != nil {
		return "", fmt.Errorf("%w: %v", errBadEDU, err)
	}
	if _, server, ok := splitUserID(u.UserID); !ok || server != origin {
		return "", fmt.Errorf("%w: user %q is not of server %q", errBadEDU, u.UserID, origin)
	}
	return u.UserID, nil
}

// presencePush is one entry of an m.presence EDU (spec: Server-Server API,
// "Presence", m.presence).
type presencePush struct {
	UserID          string  `json:"user_id"`
	Presence        string  `json:"presence"`
	StatusMsg       *string `json:"status_msg,omitempty"`
	LastActiveAgo   int64   `json:"last_active_ago"`
	CurrentlyActive bool    `json:"currently_active,omitempty"`
}

// parsePresenceEDU reads an m.presence EDU from origin and returns the
// entries about origin's users with a valid state; the rest are left out.
func parsePresenceEDU(origin string, content []byte) ([]presencePush, error) {
	var p struct {
		Push []json.RawMessage `json:"push"`
	}
	if err := json.Unmarshal(content, &p); err != nil {
		return nil, fmt.Errorf("%w: %v", errBadEDU, err)
	}
	var out []presencePush
	for _, raw := range p.Push[:min(len(p.Push), maxPresencePush)] {
		var e presencePush
		if json.Unmarshal(raw, &e) != nil || !validPresence(e.Presence) || e.LastActiveAgo < 0 {
			continue
		}
		if _, server, ok := splitUserID(e.UserID); !ok || server != origin {
			continue
		}
		if e.StatusMsg != nil && len(*e.StatusMsg) > maxStatusMsg {
			continue
		}
		out = append(out, e)
	}
	return out, nil
}

// sharesRoomWithLocal reports whether the (remote) user is joined to a
// room that one of our users is joined to.
func (f *Service) sharesRoomWithLocal(ctx context.Context, userID string) (bool, error) {
	users, err := f.db.UsersSharingRooms(ctx, userID)
	if err != nil {
		return false, err
	}
	return slices.ContainsFunc(users, f.isLocalUser), nil
}

// receiveDeviceListEDU applies an m.device_list_update or
// m.signing_key_update EDU: the user's device list changed, so our users
// sharing a room with them see them in /sync's device_lists.changed and
// query their keys again (which we proxy to origin, fresh).
func (f *Service) receiveDeviceListEDU(ctx context.Context, origin string, edu gomatrixserverlib.EDU) {
	var userID string
	if edu.Type == eduDeviceListUpdate {
		u, err := parseDeviceListUpdate(origin, edu.Content)
		if err != nil {
			f.log.Info("m.device_list_update EDU dropped", "origin", origin, "err", err)
			return
		}
		userID = u.UserID
	} else {
		u, err := parseSigningKeyUpdate(origin, edu.Content)
		if err != nil {
			f.log.Info("m.signing_key_update EDU dropped", "origin", origin, "err", err)
			return
		}
		userID = u
	}
	shared, err := f.sharesRoomWithLocal(ctx, userID)
	if err != nil {
		f.log.Warn("device list update: shared rooms", "origin", origin, "err", err)
		return
	}
	if !shared {
		f.log.Info("device list update for a user sharing no room with us", "origin", origin, "user_id", userID)
		return
	}
	if err := f.db.RecordDeviceListChange(ctx, userID); err != nil {
		f.log.Warn("recording a remote device list change failed", "origin", origin, "err", err)
	}
}

// receivePresenceEDU applies an m.presence EDU: pushes for origin's users
// who share a room with ours show in our users' /sync.
func (f *Service) receivePresenceEDU(ctx context.Context, origin string, content []byte) {
	pushes, err := parsePresenceEDU(origin, content)
	if err != nil {
		f.log.Info("m.presence EDU dropped", "origin", origin, "err", err)
		return
	}
	now := f.clock.Now()
	for _, p := range pushes {
		shared, err := f.sharesRoomWithLocal(ctx, p.UserID)
		if err != nil {
			f.log.Warn("presence: shared rooms", "origin", origin, "err", err)
			return
		}
		if !shared {
			f.latePresence.add(p, now)
			continue
		}
		f.applyPresence(ctx, p, now)
	}
}

// applyPresence records a remote user's presence push received at rcvd.
func (f *Service) applyPresence(ctx context.Context, p presencePush, rcvd time.Time) {
	ago := time.Duration(min(p.LastActiveAgo, math.MaxInt64/int64(time.Millisecond))) * time.Millisecond
	var msg string // absent: no status message
	if p.StatusMsg != nil {
		msg = *p.StatusMsg
	}
	f.eph.SetPresence(ctx, p.UserID, Presence{Presence: p.Presence, StatusMsg: msg,
		LastActive: rcvd.Add(-ago), CurrentlyActive: p.CurrentlyActive})
}

// replayLatePresence applies the held pushes about roomID's members,
// once one of our users has joined it.
func (f *Service) replayLatePresence(ctx context.Context, roomID string) {
	members, err := f.db.JoinedMembers(ctx, roomID)
	if err != nil {
		return
	}
	for _, lp := range f.latePresence.take(members, f.clock.Now()) {
		f.applyPresence(ctx, lp.p, lp.at)
	}
}

// latePresenceKeep and latePresenceMax bound the pushes latePresence holds.
const (
	latePresenceKeep = 30 * time.Second
	latePresenceMax  = 1000
)

// latePresence holds, for a short while, presence pushes about users who
// share no room with ours yet: the server we join a room through sends
// its users' presence while our side of the join is still being stored.
// The pushes are applied if one of our users joins their room in time,
// else forgotten.
type latePresence struct {
	mu sync.Mutex // guards m
	m  map[string]latePush
}

type latePush struct {
	p  presencePush
	at time.Time
}

func (l *latePresence) add(p presencePush, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil {
		l.m = make(map[string]latePush)
	}
	if _, ok := l.m[p.UserID]; !ok && len(l.m) >= latePresenceMax {
		for u, lp := range l.m {
			if now.Sub(lp.at) > latePresenceKeep {
				delete(l.m, u)
			}
		}
		if len(l.m) >= latePresenceMax {
			return
		}
	}
	l.m[p.UserID] = latePush{p, now}
}

// take removes and returns the fresh pushes about users.
func (l *latePresence) take(users []string, now time.Time) []latePush {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []latePush
	for _, u := range users {
		lp, ok := l.m[u]
		if !ok {
			continue
		}
		delete(l.m, u)
		if now.Sub(lp.at) <= latePresenceKeep {
			out = append(out, lp)
		}
	}
	return out
}

// userServers lists the other servers that share a room with userID.
func (f *Service) userServers(ctx context.Context, userID string) ([]string, error) {
	ms, err := f.db.Memberships(ctx, userID)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, m := range ms {
		if m.Membership != "join" {
			continue
		}
		servers, err := f.roomServers(ctx, m.RoomID)
		if err != nil {
			return nil, err
		}
		for _, s := range servers {
			if s != f.serverName && !slices.Contains(out, s) {
				out = append(out, s)
			}
		}
	}
	return out, nil
}

// sendUserEDU queues one EDU per content to every other server sharing a
// room with userID. EDUs are best effort: failures are logged.
func (f *Service) sendUserEDU(ctx context.Context, userID, eduType string, contents ...any) {
	servers, err := f.userServers(ctx, userID)
	if err != nil {
		f.log.Warn("EDU destinations", "user_id", userID, "type", eduType, "err", err)
		return
	}
	if err := f.queueEDUs(ctx, eduType, servers, contents...); err != nil {
		f.log.Warn("queueing an EDU failed", "user_id", userID, "type", eduType, "err", err)
	}
}

// sendPresence tells the servers sharing a room with a local user of their
// new presence (spec: Server-Server API, "Presence").
func (f *Service) SendPresence(ctx context.Context, userID string, st Presence) {
	f.sendUserEDU(ctx, userID, eduPresence, map[string]any{"push": []presencePush{f.presencePush(userID, st)}})
}

func (f *Service) presencePush(userID string, st Presence) presencePush {
	p := presencePush{UserID: userID, Presence: st.Presence, CurrentlyActive: st.CurrentlyActive}
	if !st.LastActive.IsZero() {
		p.LastActiveAgo = max(f.clock.Now().Sub(st.LastActive).Milliseconds(), 0)
	}
	if st.StatusMsg != "" {
		p.StatusMsg = &st.StatusMsg
	}
	return p
}

// sendRoomPresence tells dests the presence of our users joined to
// roomID, as servers that just started sharing the room with them have
// heard no change of it (sendPresence goes out on changes only).
func (f *Service) sendRoomPresence(ctx context.Context, roomID string, dests []string) {
	members, err := f.db.JoinedMembers(ctx, roomID)
	if err != nil {
		f.log.Warn("presence for a new server in the room", "room_id", roomID, "err", err)
		return
	}
	var pushes []presencePush
	for _, u := range members {
		if !f.isLocalUser(u) {
			continue
		}
		if st, ok := f.eph.Presence(u); ok {
			pushes = append(pushes, f.presencePush(u, st))
		}
	}
	var contents []any
	for start := 0; start < len(pushes); start += maxPresencePush {
		contents = append(contents, map[string]any{"push": pushes[start:min(start+maxPresencePush, len(pushes))]})
	}
	if err := f.queueEDUs(ctx, eduPresence, dests, contents...); err != nil {
		f.log.Warn("queueing presence for a new server failed", "room_id", roomID, "err", err)
	}
}

// deviceListSender announces local users' device list changes to the
// servers sharing a room with them (spec: Server-Server API, "Device
// Management"). The storage writer reports each change after its commit
// (KeyUserDevices); the sender works through them on its own goroutine,
// so that neither the writer nor the request that made the change waits
// for federation.
type deviceListSender struct {
	f *Service

	mu sync.Mutex // guards pending, running, closed and sent
	// pending holds the users with changes not yet announced, in order.
	pending []string
	running bool
	closed  bool
	// sent maps a local user to what was last announced of their devices.
	sent map[string]*announcedDevices
	// wg counts the running drain goroutine.
	wg sync.WaitGroup
}

// announcedDevices is what peers were last told of a user's devices.
type announcedDevices struct {
	streamID int64
	// devices maps a device ID to its display name and keys.
	devices map[string]string
}

func newDeviceListSender(f *Service) *deviceListSender {
	return &deviceListSender{f: f, sent: make(map[string]*announcedDevices)}
}

// committed is called by the storage writer with a commit's keys; it
// must not block.
func (d *deviceListSender) committed(keys []string) {
	for _, k := range keys {
		userID, ok := strings.CutPrefix(k, storage.KeyUserDevicesPrefix)
		if !ok || !d.f.isLocalUser(userID) {
			continue
		}
		d.mu.Lock()
		if !d.closed && !slices.Contains(d.pending, userID) {
			d.pending = append(d.pending, userID)
			if !d.running {
				d.running = true
				d.wg.Add(1)
				go d.drain()
			}
		}
		d.mu.Unlock()
	}
}

// close stops announcing and waits for a running drain to end.
func (d *deviceListSender) close() {
	d.mu.Lock()
	d.closed = true
	d.pending = nil
	d.mu.Unlock()
	d.wg.Wait()
}

// drain announces pending users until none is left.
func (d *deviceListSender) drain() {
	defer d.wg.Done()
	for {
		d.mu.Lock()
		if len(d.pending) == 0 || d.closed {
			d.running = false
			d.mu.Unlock()
			return
		}
		userID := d.pending[0]
		d.pending = d.pending[1:]
		d.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if err := d.announce(ctx, userID); err != nil {
			d.f.log.Warn("announcing a device list change failed", "user_id", userID, "err", err)
		}
		cancel()
	}
}

// announce sends one m.device_list_update per device that changed since
// the last announcement (all of them the first time after a start, and
// deleted ones), or an m.signing_key_update when no device changed (a
// cross-signing key or signature did).
func (d *deviceListSender) announce(ctx context.Context, userID string) error {
	db := d.f.db
	devs, err := db.Devices(ctx, userID)
	if err != nil {
		return err
	}
	keys, err := db.QueryDeviceKeys(ctx, userID, nil)
	if err != nil {
		return err
	}
	keysOf := make(map[string][]byte, len(keys))
	for _, k := range keys {
		keysOf[k.DeviceID] = k.Keys
	}
	// The position of the user's last change is their stream ID: it only
	// grows, across restarts too.
	stream := d.f.positions.LastFor(storage.KeyUserDevices(userID))
	d.mu.Lock()
	prev := d.sent[userID]
	d.mu.Unlock()

	now := &announcedDevices{streamID: stream, devices: make(map[string]string, len(devs))}
	var updates []deviceListUpdate
	for _, dev := range devs {
		k := keysOf[dev.DeviceID]
		fp := dev.DisplayName + "\x00" + string(k)
		now.devices[dev.DeviceID] = fp
		if prev != nil && prev.devices[dev.DeviceID] == fp {
			continue
		}
		u := deviceListUpdate{UserID: userID, DeviceID: dev.DeviceID, DisplayName: dev.DisplayName}
		if len(k) > 0 {
			u.Keys = k
		}
		updates = append(updates, u)
	}
	if prev != nil {
		for id := range prev.devices {
			if _, ok := now.devices[id]; !ok {
				updates = append(updates, deviceListUpdate{UserID: userID, DeviceID: id, Deleted: true})
			}
		}
	}
	// prev_id names the stream IDs peers were told last (spec: "the
	// stream_ids of any prior m.device_list_update EDUs sent for this
	// user which have not been referred to already"); the updates of one
	// change share its stream ID, each referring to the one before.
	prevIDs := []int64{}
	if prev != nil && prev.streamID < stream {
		prevIDs = []int64{prev.streamID}
	}
	contents := make([]any, 0, len(updates))
	for _, u := range updates {
		u.StreamID, u.PrevID = stream, prevIDs
		prevIDs = []int64{stream}
		contents = append(contents, u)
	}
	if len(contents) > 0 {
		d.f.sendUserEDU(ctx, userID, eduDeviceListUpdate, contents...)
	} else {
		cross, err := db.CrossSigningKeys(ctx, userID)
		if err != nil {
			return err
		}
		up := map[string]any{"user_id": userID}
		if k, ok := cross[storage.CrossSigningMaster]; ok {
			up["master_key"] = json.RawMessage(k)
		}
		if k, ok := cross[storage.CrossSigningSelfSigning]; ok {
			up["self_signing_key"] = json.RawMessage(k)
		}
		if len(up) > 1 {
			d.f.sendUserEDU(ctx, userID, eduSigningKeyUpdate, up)
		}
	}
	d.mu.Lock()
	d.sent[userID] = now
	d.mu.Unlock()
	return nil
}
