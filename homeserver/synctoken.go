package homeserver

import (
	"fmt"
	"strconv"
	"strings"
)

// syncToken is a /sync position: "s<pos>_<typing>_<todevice>_<presence>".
// pos covers every stored stream (events, receipts, account data, device
// lists); typing is the in-memory typing serial; todevice is the last
// to-device message delivered, which the next request acknowledges;
// presence is the in-memory presence serial (presence.go).
type syncToken struct {
	pos      int64
	typing   int64
	toDevice int64
	presence int64
}

func (t syncToken) String() string {
	return fmt.Sprintf("s%d_%d_%d_%d", t.pos, t.typing, t.toDevice, t.presence)
}

// parseSyncToken reads a token written by String. Tokens with fewer parts
// (from older versions) read the missing parts as 0.
func parseSyncToken(s string) (syncToken, bool) {
	if !strings.HasPrefix(s, "s") {
		return syncToken{}, false
	}
	parts := strings.Split(s[1:], "_")
	if len(parts) > 4 {
		return syncToken{}, false
	}
	var vals [4]int64
	for i, p := range parts {
		n, err := strconv.ParseInt(p, 10, 64)
		if err != nil || n < 0 {
			return syncToken{}, false
		}
		vals[i] = n
	}
	return syncToken{pos: vals[0], typing: vals[1], toDevice: vals[2], presence: vals[3]}, true
}
