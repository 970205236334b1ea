package homeserver

import (
	"encoding/json"
	"testing"

	"github.com/matrix-org/gomatrixserverlib"

	"github.com/switchboard-chat/switchboard/homeserver/rooms"
)

// FuzzInboundPDU feeds arbitrary bytes through the state-free checks of
// an inbound PDU and a transaction body: nothing may panic, and whatever
// passes is canonical, small and of a room.
func FuzzInboundPDU(f *testing.F) {
	for _, s := range []string{
		`{"room_id":"!r:x","type":"m.room.message","sender":"@a:x","content":{"body":"hi"},"depth":3,"prev_events":[],"auth_events":[],"origin_server_ts":1,"hashes":{"sha256":"AAAA"},"signatures":{}}`,
		`{"room_id":"!r:x","depth":1.5}`, `{"room_id":5}`, `{}`, `[`, `{"pdus":[{}],"edus":[{"edu_type":"m.typing","content":{}}]}`,
	} {
		f.Add([]byte(s))
	}
	ver, _ := gomatrixserverlib.GetRoomVersion(defaultRoomVersion)
	f.Fuzz(func(t *testing.T, raw []byte) {
		var txn struct {
			PDUs []json.RawMessage `json:"pdus"`
			EDUs []json.RawMessage `json:"edus"`
		}
		_ = json.Unmarshal(raw, &txn)
		if len(raw) > rooms.MaxEventBytes || checkCanonicalJSON(raw) != nil {
			return
		}
		roomID, err := rooms.RoomOf(raw)
		if err != nil {
			return
		}
		pdu, err := ver.NewEventFromUntrustedJSON(raw)
		if err != nil {
			return
		}
		if pdu.RoomID().String() != roomID {
			t.Fatalf("room %q parsed as %q", roomID, pdu.RoomID().String())
		}
	})
}
