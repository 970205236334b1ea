package sync

import (
	"fmt"
	"strconv"
	"strings"
)

// StreamID names a stream's slot in a since token.
type StreamID int

// The streams' slots. The first four are the fields of the token's short
// form, which is what every token looked like before the streams had a
// slot each: "s<rooms>_<typing>_<todevice>_<presence>".
const (
	// StreamRooms: timelines, state and memberships (the storage position).
	StreamRooms StreamID = iota
	// StreamTyping: the ephemeral typing serial.
	StreamTyping
	// StreamToDevice: the last to-device message delivered; the next request
	// acknowledges everything up to it.
	StreamToDevice
	// StreamPresence: the ephemeral presence serial.
	StreamPresence
	// The storage streams below count on the storage position, as
	// StreamRooms does.
	StreamAccountData
	StreamReceipts
	StreamDeviceLists
	StreamUnread
	numStreams
)

// shortFields is the number of fields of the short form.
const shortFields = 4

// Token is a position per stream: what a response covered, and what the
// next request starts from.
type Token struct {
	pos [numStreams]int64
}

// Get returns the position of stream id.
func (t Token) Get(id StreamID) int64 {
	if id < 0 || id >= numStreams {
		return 0
	}
	return t.pos[id]
}

// Set sets the position of stream id.
func (t *Token) Set(id StreamID, pos int64) {
	if id >= 0 && id < numStreams {
		t.pos[id] = pos
	}
}

// storageStream reports whether id counts on the storage position, like
// StreamRooms.
func storageStream(id StreamID) bool {
	return id == StreamAccountData || id == StreamReceipts || id == StreamDeviceLists || id == StreamUnread
}

// String writes the token. While every storage stream is at the Rooms
// position (the usual case: they all reach the same committed position)
// it is the short form clients have always held; otherwise every slot is
// written.
func (t Token) String() string {
	short := true
	for id := shortFields; id < int(numStreams); id++ {
		short = short && t.pos[id] == t.pos[StreamRooms]
	}
	n := int(numStreams)
	if short {
		n = shortFields
	}
	var b strings.Builder
	b.WriteByte('s')
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte('_')
		}
		b.WriteString(strconv.FormatInt(t.pos[i], 10))
	}
	return b.String()
}

// ParseToken reads a token written by String. A short token (one to four
// fields, as older versions wrote) reads missing ephemeral and to-device
// fields as 0 and every storage stream at the StreamRooms position.
func ParseToken(s string) (Token, error) {
	var t Token
	if !strings.HasPrefix(s, "s") {
		return t, fmt.Errorf("%w: %q", ErrBadToken, s)
	}
	parts := strings.Split(s[1:], "_")
	if len(parts) > shortFields && len(parts) != int(numStreams) {
		return t, fmt.Errorf("%w: %d fields", ErrBadToken, len(parts))
	}
	for i, p := range parts {
		n, err := strconv.ParseInt(p, 10, 64)
		if err != nil || n < 0 {
			return Token{}, fmt.Errorf("%w: field %q", ErrBadToken, p)
		}
		t.pos[i] = n
	}
	if len(parts) <= shortFields {
		for id := StreamID(0); id < numStreams; id++ {
			if storageStream(id) {
				t.pos[id] = t.pos[StreamRooms]
			}
		}
	}
	return t, nil
}
