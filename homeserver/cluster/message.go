package cluster

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// wake is one message on the wake-up channel. A node publishes one for
// every local commit notification (Pos and Keys; Pos 0 for a wake-up with
// no position, such as typing) and one for every committed write batch
// (Link: the highest position committed before the batch and the batch's
// highest), in that order.
type wake struct {
	Node string   `json:"n"`
	Pos  int64    `json:"p,omitempty"`
	Keys []string `json:"k,omitempty"`
	Link []int64  `json:"l,omitempty"`
	// Typing is a typing change (typing.go), sent before the wake-up of
	// its room.
	Typing *typingChange `json:"t,omitempty"`
}

// typingChange is one user starting or stopping typing in a room.
type typingChange struct {
	Room      string `json:"r"`
	User      string `json:"u"`
	Typing    bool   `json:"y,omitempty"`
	TimeoutMS int64  `json:"ms,omitempty"`
	// Serial is the sender's typing serial after the change.
	Serial int64 `json:"s"`
}

// Limits on what a node accepts from the channel. Redis is trusted in the
// sense that only nodes write to it, but a bad message must change nothing
// and crash nothing.
const (
	maxMessageBytes = 1 << 20
	maxKeys         = 10000
	maxKeyBytes     = 1024
	maxNodeIDBytes  = 64
	maxTypingMS     = int64(time.Hour / time.Millisecond)
)

func encodeWake(w wake) ([]byte, error) { return json.Marshal(w) }

// decodeWake parses and checks one message.
func decodeWake(b []byte) (wake, error) {
	var w wake
	if len(b) > maxMessageBytes {
		return wake{}, fmt.Errorf("%w: %d bytes", ErrBadMessage, len(b))
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return wake{}, fmt.Errorf("%w: %v", ErrBadMessage, err)
	}
	switch {
	case w.Node == "" || len(w.Node) > maxNodeIDBytes:
		return wake{}, fmt.Errorf("%w: node id", ErrBadMessage)
	case w.Pos < 0:
		return wake{}, fmt.Errorf("%w: negative position", ErrBadMessage)
	case len(w.Keys) > maxKeys:
		return wake{}, fmt.Errorf("%w: %d keys", ErrBadMessage, len(w.Keys))
	case w.Link != nil && (len(w.Link) != 2 || w.Link[0] < 0 || w.Link[1] <= w.Link[0]):
		return wake{}, fmt.Errorf("%w: link %v", ErrBadMessage, w.Link)
	case w.Link == nil && len(w.Keys) == 0 && w.Pos == 0 && w.Typing == nil:
		return wake{}, fmt.Errorf("%w: empty", ErrBadMessage)
	}
	if t := w.Typing; t != nil {
		if !goodKey(t.Room) || !goodKey(t.User) || t.TimeoutMS < 0 || t.TimeoutMS > maxTypingMS || t.Serial < 0 {
			return wake{}, fmt.Errorf("%w: typing", ErrBadMessage)
		}
	}
	for _, k := range w.Keys {
		if !goodKey(k) {
			return wake{}, fmt.Errorf("%w: key", ErrBadMessage)
		}
	}
	return w, nil
}

func goodKey(k string) bool {
	return k != "" && len(k) <= maxKeyBytes && !strings.ContainsRune(k, 0)
}
