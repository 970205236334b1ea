package sync

import (
	stdsync "sync"
	"time"

	"github.com/switchboard-chat/switchboard/internal/clock"
)

// LocalEphemeral is the Ephemeral of one process: typing and presence in
// memory.
type LocalEphemeral struct {
	clock clock.Clock

	tmu    stdsync.Mutex // guards typing
	typing TypingState

	pmu stdsync.Mutex // guards presenceSerial, lastScan and presence
	// presenceSerial increases with every presence change.
	presenceSerial int64
	// lastScan is when ScanPresence last looked for idle users.
	lastScan time.Time
	// presence maps a user ID to their presence.
	presence map[string]*PresenceState
}

// NewLocalEphemeral returns in-memory typing and presence on clock c.
func NewLocalEphemeral(c clock.Clock) *LocalEphemeral {
	return &LocalEphemeral{clock: c, presence: make(map[string]*PresenceState)}
}

// SetTyping implements Ephemeral.
func (e *LocalEphemeral) SetTyping(roomID, userID string, typing bool, timeout time.Duration) bool {
	e.tmu.Lock()
	defer e.tmu.Unlock()
	return e.typing.Set(roomID, userID, typing, e.clock.Now().Add(timeout), 0)
}

// TypingPosition implements Ephemeral.
func (e *LocalEphemeral) TypingPosition() int64 {
	e.tmu.Lock()
	defer e.tmu.Unlock()
	return e.typing.Position(e.clock.Now())
}

// TypingSince implements Ephemeral.
func (e *LocalEphemeral) TypingSince(roomID string, since int64) ([]string, bool) {
	e.tmu.Lock()
	defer e.tmu.Unlock()
	return e.typing.Since(roomID, since)
}

// SetPresence implements Ephemeral.
func (e *LocalEphemeral) SetPresence(userID string, u PresenceUpdate) (PresenceState, bool) {
	e.pmu.Lock()
	defer e.pmu.Unlock()
	st := e.presence[userID]
	if st == nil {
		st = &PresenceState{Presence: PresenceOffline}
		e.presence[userID] = st
	}
	old := *st
	if !u.LastActive.IsZero() {
		st.LastActive = u.LastActive
	}
	// A sync marks the user online unless they chose a state themselves;
	// what a sync set, a later sync may change.
	if !u.FromSync || st.auto || st.Presence == PresenceOffline || u.Presence != PresenceOnline {
		st.Presence, st.CurrentlyActive, st.auto = u.Presence, u.CurrentlyActive, u.FromSync
	}
	if u.StatusMsg != nil {
		st.StatusMsg = *u.StatusMsg
	}
	st.Heard = e.clock.Now()
	changed := old.Presence != st.Presence || old.StatusMsg != st.StatusMsg || old.CurrentlyActive != st.CurrentlyActive
	if changed {
		e.presenceSerial++
		st.serial = e.presenceSerial
		st.pinged = st.Heard // a change goes out over federation
	}
	return *st, changed
}

// Presence implements Ephemeral.
func (e *LocalEphemeral) Presence(userID string) (PresenceState, bool) {
	e.pmu.Lock()
	defer e.pmu.Unlock()
	st := e.presence[userID]
	if st == nil {
		return PresenceState{}, false
	}
	return *st, true
}

// ScanPresence implements Ephemeral.
func (e *LocalEphemeral) ScanPresence(isLocal func(string) bool) (int64, PresenceScan) {
	e.pmu.Lock()
	defer e.pmu.Unlock()
	now := e.clock.Now()
	var scan PresenceScan
	if now.Sub(e.lastScan) < PresenceScanEvery {
		return e.presenceSerial, scan
	}
	e.lastScan = now
	for u, st := range e.presence {
		if st.Presence == PresenceOffline {
			continue
		}
		local := isLocal(u)
		switch {
		case local && st.Presence == PresenceOnline && now.Sub(st.LastActive) > PresenceIdleAfter:
			// Idle is the server's doing: the user's next sync makes
			// them online again.
			st.Presence, st.CurrentlyActive, st.auto = PresenceUnavailable, false, true
		case !local && now.Sub(st.Heard) > PresenceRemoteTimeout:
			st.Presence, st.CurrentlyActive = PresenceOffline, false
		default:
			if local && now.Sub(st.pinged) > PresencePingEvery {
				st.pinged = now
				scan.Ping = append(scan.Ping, u)
			}
			continue
		}
		e.presenceSerial++
		st.serial, st.pinged = e.presenceSerial, now
		scan.Changed = append(scan.Changed, u)
	}
	return e.presenceSerial, scan
}

// PresenceSince implements Ephemeral.
func (e *LocalEphemeral) PresenceSince(since int64, want func(string) bool) map[string]PresenceState {
	e.pmu.Lock()
	defer e.pmu.Unlock()
	if since == e.presenceSerial {
		return nil
	}
	if since > e.presenceSerial {
		since = 0
	}
	out := map[string]PresenceState{}
	for u, st := range e.presence {
		if st.serial > since && want(u) {
			out[u] = *st
		}
	}
	return out
}
