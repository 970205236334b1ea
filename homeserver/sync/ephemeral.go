package sync

import "time"

// Ephemeral is typing and presence: state that lives in memory, expires by
// itself, and that a restart may lose (spec: Client-Server API, "Typing
// Notifications" and "Presence"). One process uses NewLocalEphemeral; a
// cluster swaps in one shared between processes. Neither wakes anyone:
// the caller notifies the rooms and users a change concerns.
type Ephemeral interface {
	// SetTyping marks userID typing in roomID until timeout passes, or not
	// typing, and reports whether that changed anything.
	SetTyping(roomID, userID string, typing bool, timeout time.Duration) bool
	// TypingPosition returns the typing serial, expiring stale entries
	// first.
	TypingPosition() int64
	// TypingSince returns the users typing in roomID if the room changed
	// after serial since (ok false if unchanged).
	TypingSince(roomID string, since int64) (users []string, ok bool)

	// SetPresence applies u to userID and returns the new state and
	// whether anything others see changed.
	SetPresence(userID string, u PresenceUpdate) (PresenceState, bool)
	// Presence returns userID's presence (ok false if unknown).
	Presence(userID string) (PresenceState, bool)
	// ScanPresence returns the presence serial, first (at most every
	// PresenceScanEvery) letting idle local users fall unavailable and
	// silent remote users go offline, and finding the pings due.
	ScanPresence(isLocal func(string) bool) (int64, PresenceScan)
	// PresenceSince returns the states of users for whom want is true
	// that changed after serial since. A since past the current serial (a
	// token from before a restart) reads as 0: everything known.
	PresenceSince(since int64, want func(string) bool) map[string]PresenceState
}

// Presence states (spec: Client-Server API, "Presence", m.presence).
const (
	PresenceOnline      = "online"
	PresenceUnavailable = "unavailable"
	PresenceOffline     = "offline"
)

// Presence timing. A local user stays online without syncing or setting
// their presence for PresenceIdleAfter, then reads as unavailable. A local
// user's unchanged presence is sent again to the servers sharing a room
// every PresencePingEvery; a remote user not heard of for
// PresenceRemoteTimeout reads as offline (their server may be gone).
// Synapse uses the same 25 and 30 minutes.
const (
	PresenceIdleAfter     = 5 * time.Minute
	PresenceScanEvery     = 10 * time.Second
	PresencePingEvery     = 25 * time.Minute
	PresenceRemoteTimeout = 30 * time.Minute
)

// PresenceState is what is known of one user's presence.
type PresenceState struct {
	Presence  string
	StatusMsg string
	// LastActive is when the user was last active (a sync, a presence
	// update); for remote users, as their server told.
	LastActive time.Time
	// CurrentlyActive is the remote server's word for remote users; for
	// local users it is presence == online.
	CurrentlyActive bool
	// serial is the serial of the last change.
	serial int64
	// auto: a sync or the idle timeout set this state, not an explicit
	// PUT or a remote server; a sync may change it.
	auto bool
	// Heard is when the state was last set (a remote user's last push).
	Heard time.Time
	// pinged is when a local user's state last went out over federation.
	pinged time.Time
}

// PresenceUpdate is one change asked of the presence state.
type PresenceUpdate struct {
	Presence string
	// StatusMsg replaces the status message when not nil.
	StatusMsg *string
	// LastActive, when not zero, is the new last-active time.
	LastActive      time.Time
	CurrentlyActive bool
	// FromSync: a sync marks the user online only if they are offline or
	// unknown; an explicit unavailable stays until changed explicitly.
	FromSync bool
}

// PresenceScan is what one scan found.
type PresenceScan struct {
	// Changed: local users who fell idle and remote users who timed out.
	Changed []string
	// Ping: local users whose unchanged presence is due to go out again.
	Ping []string
}

// PresenceContent is the content of an m.presence event (spec:
// Client-Server API, "m.presence") and the body of GET .../status.
func PresenceContent(st PresenceState, now time.Time) map[string]any {
	c := map[string]any{"presence": st.Presence}
	if !st.LastActive.IsZero() {
		c["last_active_ago"] = max(now.Sub(st.LastActive).Milliseconds(), 0)
	}
	if st.StatusMsg != "" {
		c["status_msg"] = st.StatusMsg
	}
	if st.Presence == PresenceOnline || st.CurrentlyActive {
		c["currently_active"] = st.CurrentlyActive
	}
	return c
}
