package storage

import "context"

// Notification keys. After each committed write the writer goroutine
// reports the write's highest stream position and the keys it touched, in
// commit order, to the OnCommit callback given to Open. A room ID or user
// ID wakes the /sync requests waiting on it; the prefixed keys tell /sync
// which queries may have something new.
//
// Deriving the keys here, from what was written, means no caller can
// forget one, and reporting them before any writer is answered means a
// reader never sees a position whose keys are not recorded yet.

// KeyAccountData names a user's account data.
func KeyAccountData(userID string) string { return "ad|" + userID }

// KeyToDevice names a user's to-device messages.
func KeyToDevice(userID string) string { return "td|" + userID }

// KeyMembers names a room's membership.
func KeyMembers(roomID string) string { return keyMembersPrefix + roomID }

const keyMembersPrefix = "mem|"

// KeyDeviceLists is touched by every device list change.
const KeyDeviceLists = "dl"

// OnCommit receives, in commit order, the highest position of each
// committed write and the keys it touched.
type OnCommit func(pos int64, keys []string)

// touch records a notification key for the running write.
func (tx *Tx) touch(keys ...string) { tx.keys = append(tx.keys, keys...) }

// touchUserRooms records the rooms userID is joined to (a device list
// change concerns everyone sharing a room with them).
func (tx *Tx) touchUserRooms(ctx context.Context, userID string) error {
	rows, err := tx.query(ctx, `SELECT room_id FROM current_state WHERE type = 'm.room.member' AND state_key = $1 AND membership = 'join'`, userID)
	if err != nil {
		return err
	}
	rooms, err := scanStrings(rows)
	if err != nil {
		return err
	}
	tx.touch(rooms...)
	return nil
}
