package cluster

import (
	"encoding/json"
	"fmt"
	"strings"
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
}

// Limits on what a node accepts from the channel. Redis is trusted in the
// sense that only nodes write to it, but a bad message must change nothing
// and crash nothing.
const (
	maxMessageBytes = 1 << 20
	maxKeys         = 10000
	maxKeyBytes     = 1024
	maxNodeIDBytes  = 64
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
	case w.Link == nil && len(w.Keys) == 0 && w.Pos == 0:
		return wake{}, fmt.Errorf("%w: empty", ErrBadMessage)
	}
	for _, k := range w.Keys {
		if k == "" || len(k) > maxKeyBytes || strings.ContainsRune(k, 0) {
			return wake{}, fmt.Errorf("%w: key", ErrBadMessage)
		}
	}
	return w, nil
}
