package homeserver

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/fclient"
	"github.com/matrix-org/gomatrixserverlib/spec"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/switchboard-chat/switchboard/homeserver/storage"
	"github.com/switchboard-chat/switchboard/homeserver/storage/storagetest"
)

// putInvite sends PUT /_matrix/federation/v2/invite/{roomId}/{eventId}
// (spec: Server-Server API, "Inviting to a room") from node from, signed
// as from, to node to, with body as the request content verbatim. It
// returns the status, errcode and error message of the answer.
func putInvite(t *testing.T, from, to *fedNode, roomID, eventID string, body []byte) (int, string, string) {
	t.Helper()
	fr := fclient.NewFederationRequest(http.MethodPut, spec.ServerName(from.name), spec.ServerName(to.name),
		"/_matrix/federation/v2/invite/"+url.PathEscape(roomID)+"/"+url.PathEscape(eventID))
	if err := fr.SetContent(json.RawMessage(body)); err != nil {
		t.Fatalf("request content: %v", err)
	}
	if err := fr.Sign(spec.ServerName(from.name), "ed25519:fed", from.key); err != nil {
		t.Fatal(err)
	}
	req, err := fr.HTTPRequest()
	if err != nil {
		t.Fatal(err)
	}
	// The library may re-encode the content; a hostile peer sends its
	// bytes as they are (the X-Matrix signature is over the canonical form).
	req.Body, req.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
	resp, err := (&http.Client{Transport: from.srv.fed.Transport(), Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("invite request: %v", err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var e struct {
		ErrCode string `json:"errcode"`
		Error   string `json:"error"`
	}
	_ = json.Unmarshal(raw, &e)
	return resp.StatusCode, e.ErrCode, e.Error
}

// inviteBody is the v2 invite request content around event.
func inviteBody(event []byte, version string) []byte {
	return inviteBodyState(event, version, `[]`)
}

// inviteBodyState is inviteBody with the given invite_room_state.
func inviteBodyState(event []byte, version, state string) []byte {
	return []byte(`{"event":` + string(event) + `,"invite_room_state":` + state + `,"room_version":"` + version + `"}`)
}

// withField sets one top-level field of an event's JSON (after signing,
// as a hostile peer edits it by hand).
func withField(raw []byte, field string, value string) []byte {
	var m map[string]json.RawMessage
	_ = json.Unmarshal(raw, &m)
	m[field] = json.RawMessage(value)
	out, _ := json.Marshal(m)
	return out
}

// TestFederationInviteHostile sends hostile invites to B's
// /_matrix/federation/v2/invite: each is refused with a Matrix error,
// nothing is stored, and Bob's /sync shows no invite; a well-formed
// invite through the same path is accepted.
func TestFederationInviteHostile(t *testing.T) {
	fedBackends(t, func(t *testing.T, b storagetest.Backend) {
		a, bb, c := startFedNode(t, b), startFedNode(t, b), startFedNode(t, b)
		ctx := testCtx(t)
		alice, bob := a.user(t, "alice"), bb.user(t, "bob")
		newRoom := func(name string) string {
			t.Helper()
			r, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Name: name, Preset: "private_chat"})
			if err != nil {
				t.Fatal(err)
			}
			return string(r.RoomID)
		}
		good, hostile := newRoom("good"), newRoom("hostile")
		room, err := a.srv.db.Room(ctx, hostile)
		if err != nil {
			t.Fatal(err)
		}
		version := room.Version
		invite := func(roomID, target string, content map[string]any, key ed25519.PrivateKey) gomatrixserverlib.PDU {
			return buildOn(t, a, roomID, string(alice.UserID), spec.MRoomMember, content, func(p *gomatrixserverlib.ProtoEvent) {
				p.StateKey = &target
			}, a.name, key)
		}
		inv := map[string]any{"membership": "invite", "reason": "hostile"}
		bobID := string(bob.UserID)

		// The control: a well-formed invite is signed and kept.
		ok := invite(good, bobID, inv, a.key)
		okState := `[{"type":"m.room.name","state_key":"","sender":"` + string(alice.UserID) + `","content":{"name":"good"}}]`
		if status, code, msg := putInvite(t, a, bb, good, ok.EventID(), inviteBodyState(ok.JSON(), version, okState)); status != http.StatusOK {
			t.Fatalf("a good invite was refused: %d %s %s", status, code, msg)
		}

		_, wrongKey, _ := ed25519.GenerateKey(rand.Reader)
		base := invite(hostile, bobID, inv, a.key)
		wrong := invite(hostile, bobID, inv, wrongKey)
		// The library refuses to build an event this large: a hostile peer
		// writes it by hand.
		big := bytes.Replace(base.JSON(), []byte(`"hostile"`), []byte(`"`+strings.Repeat("x", 70000)+`"`), 1)
		join := invite(hostile, bobID, map[string]any{"membership": "join"}, a.key)
		carol := invite(hostile, "@carol:"+c.name, inv, a.key)
		ban := invite(hostile, bobID, map[string]any{"membership": "ban"}, a.key)
		cases := []struct {
			name     string
			from     *fedNode
			pathRoom string
			eventID  string
			body     []byte
			status   int
			errcode  string
			want     string // part of the error message: refused for this reason
		}{
			{"bad content hash", a, hostile, base.EventID(), inviteBody(bytes.Replace(base.JSON(), []byte(`"hostile"`), []byte(`"changed"`), 1), version), 400, "M_BAD_JSON", "hash"},
			{"bad signature", a, hostile, wrong.EventID(), inviteBody(wrong.JSON(), version), 403, "M_FORBIDDEN", "not signed by"},
			{"forged origin", c, hostile, base.EventID(), inviteBody(base.JSON(), version), 403, "M_FORBIDDEN", "is not a user of 127.0.0.1"},
			{"room in path differs", a, "!other:" + a.name, base.EventID(), inviteBody(base.JSON(), version), 400, "M_BAD_JSON", "room mismatch"},
			{"event ID in path differs", a, hostile, ok.EventID(), inviteBody(base.JSON(), version), 400, "M_BAD_JSON", "not the membership event"},
			{"depth 2^63-1", a, hostile, base.EventID(), inviteBody(withField(base.JSON(), "depth", "9223372036854775807"), version), 400, "M_BAD_JSON", "integers"},
			{"float in content", a, hostile, base.EventID(), inviteBody(withField(base.JSON(), "content", `{"membership":"invite","x":1.5}`), version), 400, "M_BAD_JSON", "integers"},
			{"integer beyond 2^53", a, hostile, base.EventID(), inviteBody(withField(base.JSON(), "content", `{"membership":"invite","x":9007199254740992}`), version), 400, "M_BAD_JSON", "integers"},
			{"join, not invite", a, hostile, join.EventID(), inviteBody(join.JSON(), version), 400, "M_BAD_JSON", "not an invite"},
			{"ban, not invite", a, hostile, ban.EventID(), inviteBody(ban.JSON(), version), 400, "M_BAD_JSON", "not an invite"},
			{"invitee not on this server", a, hostile, carol.EventID(), inviteBody(carol.JSON(), version), 403, "M_FORBIDDEN", "not a user of this server"},
			{"over 65536 bytes", a, hostile, base.EventID(), inviteBody(big, version), 413, "M_TOO_LARGE", "larger"},
			{"duplicate key", a, hostile, base.EventID(), inviteBody(bytes.Replace(base.JSON(), []byte(`"membership":"invite"`), []byte(`"membership":"invite","membership":"join"`), 1), version), 400, "M_BAD_JSON", "duplicate key"},
			// Canonicalisation drops a lone surrogate escape: hash and
			// signature still match, while a plain parse reads U+FFFD.
			{"lone surrogate escape", a, hostile, base.EventID(), inviteBody(bytes.Replace(base.JSON(), []byte(`"hostile"`), []byte(`"host\ud800ile"`), 1), version), 400, "M_BAD_JSON", "canonical"},
			// Refused before the handler: the request is not valid UTF-8.
			{"invalid UTF-8", a, hostile, base.EventID(), inviteBody(bytes.Replace(base.JSON(), []byte(`"hostile"`), []byte("\"host\xffile\""), 1), version), 401, "M_UNAUTHORIZED", "X-Matrix"},
			{"stripped state: a float", a, hostile, base.EventID(), inviteBodyState(base.JSON(), version, `[{"type":"m.room.name","state_key":"","sender":"@x:y","content":{"name":1.5}}]`), 400, "M_BAD_JSON", "invite_room_state"},
			{"stripped state: not an object", a, hostile, base.EventID(), inviteBodyState(base.JSON(), version, `[{"type":"m.room.name","state_key":"","sender":"@x:y","content":{}}, 7]`), 400, "M_BAD_JSON", "invite_room_state"},
			{"stripped state: no type", a, hostile, base.EventID(), inviteBodyState(base.JSON(), version, `[{"state_key":"","sender":"@x:y","content":{}}]`), 400, "M_BAD_JSON", "invite_room_state"},
			{"stripped state: 51 events", a, hostile, base.EventID(), inviteBodyState(base.JSON(), version, "["+strings.Repeat(`{"type":"m.room.topic","state_key":"","sender":"@x:y","content":{}},`, 50)+`{"type":"m.room.topic","state_key":"","sender":"@x:y","content":{}}]`), 413, "M_TOO_LARGE", "invite_room_state"},
			{"not an object", a, hostile, base.EventID(), inviteBody([]byte(`["not","an","event"]`), version), 400, "M_BAD_JSON", "object"},
			{"unsupported room version", a, hostile, base.EventID(), inviteBody(base.JSON(), "999"), 400, "M_INCOMPATIBLE_ROOM_VERSION", "not supported"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				status, code, msg := putInvite(t, tc.from, bb, tc.pathRoom, tc.eventID, tc.body)
				if status != tc.status || code != tc.errcode || !strings.Contains(msg, tc.want) {
					t.Fatalf("answer %d %q %q, want %d %q mentioning %q", status, code, msg, tc.status, tc.errcode, tc.want)
				}
			})
		}

		// Nothing of it was kept: no room, no event, no invite in /sync.
		for _, roomID := range []string{hostile, "!other:" + a.name} {
			if _, err := bb.srv.db.Room(ctx, roomID); !errors.Is(err, storage.ErrNotFound) {
				t.Fatalf("a refused invite created room %s on B: %v", roomID, err)
			}
		}
		for _, ev := range []gomatrixserverlib.PDU{base, wrong, join, carol, ban} {
			if _, err := bb.srv.db.Event(ctx, ev.EventID()); !errors.Is(err, storage.ErrNotFound) {
				t.Fatalf("refused invite %s was stored: %v", ev.EventID(), err)
			}
		}
		resp, err := bob.SyncRequest(context.Background(), 0, "", "", true, "")
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := resp.Rooms.Invite[id.RoomID(good)]; !ok {
			t.Fatalf("the good invite is missing from /sync: %v", resp.Rooms.Invite)
		}
		if len(resp.Rooms.Invite) != 1 {
			t.Fatalf("/sync shows %d invites, want only the good one: %v", len(resp.Rooms.Invite), resp.Rooms.Invite)
		}
	})
}
