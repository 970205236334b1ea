package homeserver

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/switchboard-chat/switchboard/homeserver/storage"
	"github.com/switchboard-chat/switchboard/homeserver/storage/storagetest"
	"github.com/switchboard-chat/switchboard/internal/testkit"
)

// tamperer rewrites a node's federation responses: a hostile peer made
// from a real one, so that every arrival path can be fed bad PDUs.
type tamperer struct {
	fn atomic.Pointer[func(path string, body []byte) []byte]
	// lose, when set, swallows the inbound transactions it is given
	// (answered as if taken, never handled).
	lose atomic.Pointer[func(body []byte)]
}

func (tp *tamperer) set(f func(path string, body []byte) []byte) { tp.fn.Store(&f) }

func (tp *tamperer) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if lose := tp.lose.Load(); lose != nil && strings.HasPrefix(r.URL.Path, "/_matrix/federation/v1/send/") {
			body, _ := io.ReadAll(r.Body)
			(*lose)(body)
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"pdus":{}}`))
			return
		}
		f := tp.fn.Load()
		if f == nil {
			next.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r)
		body := (*f)(r.URL.Path, rec.Body.Bytes())
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(rec.Code)
		_, _ = w.Write(body)
	})
}

// appendPDUs adds raws to the JSON array field of a response body.
func appendPDUs(t *testing.T, body []byte, field string, raws [][]byte) []byte {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		return body // an error answer: left alone
	}
	var list []json.RawMessage
	_ = json.Unmarshal(m[field], &list)
	for _, r := range raws {
		list = append(list, r)
	}
	m[field], _ = json.Marshal(list)
	out, err := json.Marshal(m)
	if err != nil {
		t.Error(err)
	}
	return out
}

// hostilePDU is one bad PDU; id is its event ID where it has a stable one.
type hostilePDU struct {
	name string
	raw  []byte
	id   string
}

// hostilePDUs builds the bad PDUs on peer's view of roomID, each
// with a body starting "hostile-"; member is a user of peer in the room
// and adjust changes every proto event (e.g. to put it deep in history).
func hostilePDUs(t *testing.T, peer *fedNode, roomID, member string, adjust func(*gomatrixserverlib.ProtoEvent)) []hostilePDU {
	t.Helper()
	_, wrongKey, _ := ed25519.GenerateKey(rand.Reader)
	msg := func(name string) map[string]any {
		return map[string]any{"msgtype": "m.text", "body": "hostile-" + name}
	}
	build := func(name, sender string, key ed25519.PrivateKey) gomatrixserverlib.PDU {
		return buildOn(t, peer, roomID, sender, "m.room.message", msg(name), adjust, peer.name, key)
	}
	hash := build("hash-original", member, peer.key)
	sig := build("signature", member, wrongKey)
	forged := build("forged-origin", "@mallory:127.0.0.1:1", peer.key)
	eve := build("not-in-room", "@eve:"+peer.name, peer.key)
	return []hostilePDU{
		{"bad hash", bytes.Replace(hash.JSON(), []byte("hash-original"), []byte("hash-changed"), 1), hash.EventID()},
		{"bad signature", sig.JSON(), sig.EventID()},
		{"forged origin", forged.JSON(), forged.EventID()},
		{"mismatched room", bytes.Replace(build("room", member, peer.key).JSON(), []byte(roomID), []byte("!elsewhere:"+peer.name), 1), ""},
		{"depth 2^63-1", withDepth(build("depth", member, peer.key).JSON(), "9223372036854775807"), ""},
		{"float", bytes.Replace(build("float", member, peer.key).JSON(), []byte(`"msgtype"`), []byte(`"x":1.5,"msgtype"`), 1), ""},
		{"sender not in room", eve.JSON(), eve.EventID()},
	}
}

// requireRefused checks that none of bad reached n: no client sees a
// hostile body, and the PDUs with a stable ID are not stored, except a
// bad-hash one that history paths may keep in redacted form.
func requireRefused(t *testing.T, n *fedNode, token string, room id.RoomID, bad []hostilePDU) {
	t.Helper()
	requireNoBody(t, n, token, room, "hostile-")
	for _, h := range bad {
		if h.id == "" {
			continue
		}
		e, err := n.srv.db.Event(context.Background(), h.id)
		if errors.Is(err, storage.ErrNotFound) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.name != "bad hash" || bytes.Contains(e.JSON, []byte("hostile-")) {
			t.Fatalf("%s: stored as %s", h.name, e.JSON)
		}
	}
}

func rawsOf(bad []hostilePDU) [][]byte {
	out := make([][]byte, len(bad))
	for i, h := range bad {
		out[i] = h.raw
	}
	return out
}

// lostGap has bob change his display name and send n messages on B,
// whose transactions to A are lost on the way: A learns of them only by
// asking, and the state at the gap holds an event A lacks.
func lostGap(t *testing.T, a *fedNode, bob *mautrix.Client, room id.RoomID, n int) {
	t.Helper()
	markers := []string{`"Bob in the gap"`}
	for i := 0; i < n; i++ {
		markers = append(markers, fmt.Sprintf(`"gap %d"`, i))
	}
	loseTransactions(t, a, markers, func() {
		if _, err := bob.SendStateEvent(testCtx(t), room, event.StateMember, string(bob.UserID), map[string]any{"membership": "join", "displayname": "Bob in the gap"}); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < n; i++ {
			if _, err := bob.SendText(testCtx(t), room, fmt.Sprintf("gap %d", i)); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// loseTransactions has n swallow the transactions it receives while send
// runs and until a PDU holding each of markers went by: their senders
// take them as delivered, so those events are lost to n.
func loseTransactions(t *testing.T, n *fedNode, markers []string, send func()) {
	t.Helper()
	var mu sync.Mutex
	seen := map[string]bool{}
	lose := func(body []byte) {
		mu.Lock()
		defer mu.Unlock()
		for _, m := range markers {
			if bytes.Contains(body, []byte(m)) {
				seen[m] = true
			}
		}
	}
	n.tamper.lose.Store(&lose)
	defer n.tamper.lose.Store(nil)
	send()
	testkit.Eventually(t, 20*time.Second, "the transactions to lose went by", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) == len(markers)
	})
}

// TestFederationHostilePulledPDUs feeds the bad PDUs of the issue through
// each path on which a server pulls events from a peer: the
// get_missing_events answer, the /event and /state answers of the
// state-at-a-gap fallback, the /backfill answer and the send_join answer.
// Each refuses them (the genuine events around them still arrive) and
// none reaches a client. The /send and /invite paths have their own
// tests (federation_hostile_test.go, federation_invite_hostile_test.go).
func TestFederationHostilePulledPDUs(t *testing.T) {
	fedBackends(t, func(t *testing.T, b storagetest.Backend) {
		gapPath := func(t *testing.T, byID int, tamper func(bad [][]byte) func(path string, body []byte) []byte) {
			p := joinedPair(t, b, func(c *Config) { c.Federation.StateByID = byID })
			a, bb, alice, bob, room, ctx := p.a, p.b, p.alice, p.bob, p.room, testCtx(t)
			bad := hostilePDUs(t, bb, string(room), string(bob.UserID), nil)
			lostGap(t, a, bob, room, 3)
			bb.tamper.set(tamper(rawsOf(bad)))
			after, err := bob.SendText(ctx, room, "after")
			if err != nil {
				t.Fatal(err)
			}
			testkit.Eventually(t, 20*time.Second, "the genuine event reaches A", func() bool {
				e, err := a.srv.db.Event(ctx, string(after.EventID))
				return err == nil && !e.Outlier
			})
			requireRefused(t, a, alice.AccessToken, room, bad)
		}
		t.Run("get_missing_events", func(t *testing.T) {
			gapPath(t, 50, func(bad [][]byte) func(string, []byte) []byte {
				return func(path string, body []byte) []byte {
					if strings.Contains(path, "/get_missing_events/") {
						return appendPDUs(t, body, "events", bad)
					}
					return body
				}
			})
		})
		// get_missing_events answers nothing, so the gap is filled with
		// the state at it, whose answers carry the bad PDUs.
		noMissing := func(path string, body []byte) ([]byte, bool) {
			if strings.Contains(path, "/get_missing_events/") {
				return []byte(`{"events":[]}`), true
			}
			return body, false
		}
		t.Run("event", func(t *testing.T) {
			gapPath(t, 1000, func(bad [][]byte) func(string, []byte) []byte {
				return func(path string, body []byte) []byte {
					if out, ok := noMissing(path, body); ok {
						return out
					}
					if strings.Contains(path, "/v1/event/") {
						return appendPDUs(t, body, "pdus", bad)
					}
					return body
				}
			})
		})
		t.Run("state", func(t *testing.T) {
			gapPath(t, -1, func(bad [][]byte) func(string, []byte) []byte {
				return func(path string, body []byte) []byte {
					if out, ok := noMissing(path, body); ok {
						return out
					}
					if strings.Contains(path, "/v1/state/") {
						return appendPDUs(t, appendPDUs(t, body, "pdus", bad), "auth_chain", bad)
					}
					return body
				}
			})
		})
		t.Run("backfill", func(t *testing.T) {
			a, bb, alice, bob, aliceSync, room := newRoomOnB(t, b)
			ctx := testCtx(t)
			for i := 0; i < 5; i++ {
				if _, err := bob.SendText(ctx, room.RoomID, fmt.Sprintf("old %d", i)); err != nil {
					t.Fatal(err)
				}
			}
			// Deep in history: right after the creation.
			st, err := bb.srv.db.CurrentStateEvent(ctx, string(room.RoomID), "m.room.create", "")
			if err != nil {
				t.Fatal(err)
			}
			deep := func(p *gomatrixserverlib.ProtoEvent) {
				p.PrevEvents = []string{st.EventID}
				p.Depth = 2
			}
			bad := hostilePDUs(t, bb, string(room.RoomID), string(bob.UserID), deep)
			if _, err := bob.InviteUser(ctx, room.RoomID, &mautrix.ReqInviteUser{UserID: alice.UserID}); err != nil {
				t.Fatal(err)
			}
			aliceSync.until(func(r *mautrix.RespSync) bool { _, ok := r.Rooms.Invite[room.RoomID]; return ok })
			if _, err := alice.JoinRoomByID(ctx, room.RoomID); err != nil {
				t.Fatal(err)
			}
			bb.tamper.set(func(path string, body []byte) []byte {
				if strings.Contains(path, "/backfill/") {
					return appendPDUs(t, body, "pdus", rawsOf(bad))
				}
				return body
			})
			resp, err := alice.Messages(ctx, room.RoomID, "", "", mautrix.DirectionBackward, nil, 100)
			if err != nil {
				t.Fatal(err)
			}
			old := 0
			for _, ev := range resp.Chunk {
				if body, _ := ev.Content.Raw["body"].(string); strings.HasPrefix(body, "old ") {
					old++
				}
			}
			if old != 5 {
				t.Fatalf("backfill brought %d of the 5 genuine messages", old)
			}
			requireRefused(t, a, alice.AccessToken, room.RoomID, bad)
		})
		t.Run("send_join", func(t *testing.T) {
			a, bb, alice, bob, aliceSync, room := newRoomOnB(t, b)
			ctx := testCtx(t)
			bad := hostilePDUs(t, bb, string(room.RoomID), string(bob.UserID), nil)
			if _, err := bob.InviteUser(ctx, room.RoomID, &mautrix.ReqInviteUser{UserID: alice.UserID}); err != nil {
				t.Fatal(err)
			}
			aliceSync.until(func(r *mautrix.RespSync) bool { _, ok := r.Rooms.Invite[room.RoomID]; return ok })
			for _, field := range []string{"state", "auth_chain"} {
				bb.tamper.set(func(path string, body []byte) []byte {
					if strings.Contains(path, "/send_join/") {
						return appendPDUs(t, body, field, rawsOf(bad))
					}
					return body
				})
				// A send_join answer with bad PDUs in its state or auth
				// chain cannot be trusted: the join fails, nothing stored.
				if _, err := alice.JoinRoomByID(ctx, room.RoomID); err == nil {
					t.Fatalf("a join through a send_join answer with bad PDUs in %s succeeded", field)
				}
				for _, h := range bad {
					if h.id == "" {
						continue
					}
					if _, err := a.srv.db.Event(ctx, h.id); !errors.Is(err, storage.ErrNotFound) {
						t.Fatalf("%s in %s: stored (%v)", h.name, field, err)
					}
				}
			}
			bb.tamper.set(func(path string, body []byte) []byte { return body })
			if _, err := alice.JoinRoomByID(ctx, room.RoomID); err != nil {
				t.Fatalf("the untampered join failed: %v", err)
			}
			requireRefused(t, a, alice.AccessToken, room.RoomID, bad)
		})
	})
}

// newRoomOnB starts two nodes, with bob on b owning a new room; alice on
// a has a syncer but is not invited yet.
func newRoomOnB(t *testing.T, b storagetest.Backend) (a, bb *fedNode, alice, bob *mautrix.Client, aliceSync *fedSyncer, room *mautrix.RespCreateRoom) {
	t.Helper()
	a, bb = startFedNode(t, b), startFedNode(t, b)
	alice, bob = a.user(t, "alice"), bb.user(t, "bob")
	aliceSync = newFedSyncer(t, alice)
	room, err := bob.CreateRoom(testCtx(t), &mautrix.ReqCreateRoom{Preset: "private_chat"})
	if err != nil {
		t.Fatal(err)
	}
	return a, bb, alice, bob, aliceSync, room
}
