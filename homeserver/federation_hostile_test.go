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
	"strings"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/fclient"
	"github.com/matrix-org/gomatrixserverlib/spec"
	"maunium.net/go/mautrix/id"

	"github.com/switchboard-chat/switchboard/homeserver/rooms"
	"github.com/switchboard-chat/switchboard/homeserver/storage"
	"github.com/switchboard-chat/switchboard/homeserver/storage/storagetest"
)

// buildOn builds an event in roomID on node n's frontier, lets mutate
// change the proto event, and signs it as server with key.
func buildOn(t *testing.T, n *fedNode, roomID, sender, evType string, content any, mutate func(*gomatrixserverlib.ProtoEvent), server string, key ed25519.PrivateKey) gomatrixserverlib.PDU {
	t.Helper()
	b, _ := json.Marshal(content)
	var pdu gomatrixserverlib.PDU
	err := n.srv.db.WriteTx(context.Background(), func(tx *storage.Tx) error {
		w, err := n.srv.rooms.Open(context.Background(), tx, roomID)
		if err != nil {
			return err
		}
		proto, err := w.Template(context.Background(), rooms.Event{Sender: sender, Type: evType, Content: b})
		if err != nil {
			return err
		}
		if mutate != nil {
			mutate(proto)
		}
		pdu, err = w.Version().NewEventBuilderFromProtoEvent(proto).Build(time.Now(), spec.ServerName(server), "ed25519:fed", key)
		return err
	})
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	return pdu
}

// sendRaw sends PDUs from node from to node to in one transaction and
// returns the per-PDU results.
func sendRaw(t *testing.T, from, to *fedNode, pdus ...[]byte) map[string]fclient.PDUResult {
	t.Helper()
	txn := gomatrixserverlib.Transaction{TransactionID: gomatrixserverlib.TransactionID(randomString(8)), Origin: spec.ServerName(from.name),
		Destination: spec.ServerName(to.name), OriginServerTS: spec.AsTimestamp(time.Now())}
	for _, p := range pdus {
		txn.PDUs = append(txn.PDUs, p)
	}
	resp, err := from.srv.fed.Client().SendTransaction(context.Background(), txn)
	if err != nil {
		t.Fatalf("send: %v", err)
	}
	return resp.PDUs
}

func TestFederationHostilePeer(t *testing.T) {
	fedBackends(t, func(t *testing.T, b storagetest.Backend) {
		a, bb := startFedNode(t, b), startFedNode(t, b)
		ctx := testCtx(t)
		alice, bob := a.user(t, "alice"), bb.user(t, "bob")
		bobSync := newFedSyncer(t, bob)
		room := joinAcross(t, ctx, alice, bob, bobSync)
		roomID := string(room)
		msg := map[string]any{"msgtype": "m.text", "body": "hostile"}
		_, wrongKey, _ := ed25519.GenerateKey(rand.Reader)

		// A well-formed event is accepted: the cases below differ from it
		// in one respect each.
		good := buildOn(t, bb, roomID, string(bob.UserID), "m.room.message", msg, nil, bb.name, bb.key)
		if res := sendRaw(t, bb, a, good.JSON()); res[good.EventID()].Error != "" {
			t.Fatalf("a good PDU was refused: %v", res)
		}

		badHash := bytes.Replace(buildOn(t, bb, roomID, string(bob.UserID), "m.room.message", msg, nil, bb.name, bb.key).JSON(), []byte(`"hostile"`), []byte(`"changed"`), 1)
		cases := []struct {
			name string
			raw  []byte
			want string // part of the refusal
		}{
			{"bad hash", badHash, "hash"},
			{"bad signature", buildOn(t, bb, roomID, string(bob.UserID), "m.room.message", msg, nil, bb.name, wrongKey).JSON(), "signature"},
			{"forged origin", buildOn(t, bb, roomID, "@mallory:127.0.0.1:1", "m.room.message", msg, nil, bb.name, bb.key).JSON(), "signature"},
			{"sender not in room", buildOn(t, bb, roomID, "@eve:"+bb.name, "m.room.message", msg, nil, bb.name, bb.key).JSON(), "auth"},
			{"depth 2^63-1", withDepth(buildOn(t, bb, roomID, string(bob.UserID), "m.room.message", msg, nil, bb.name, bb.key).JSON(), "9223372036854775807"), "integers"},
			{"float", bytes.Replace(buildOn(t, bb, roomID, string(bob.UserID), "m.room.message", msg, nil, bb.name, bb.key).JSON(), []byte(`"msgtype"`), []byte(`"x":1.5,"msgtype"`), 1), "integers"},
			{"unknown room", bytes.Replace(good.JSON(), []byte(roomID), []byte("!nope:"+bb.name), 1), "unknown room"},
			{"lone surrogate", bytes.Replace(buildOn(t, bb, roomID, string(bob.UserID), "m.room.message", msg, nil, bb.name, bb.key).JSON(), []byte(`"hostile"`), []byte(`"\ud800hostile"`), 1), "canonical"},
			{"duplicate key", bytes.Replace(buildOn(t, bb, roomID, string(bob.UserID), "m.room.message", msg, nil, bb.name, bb.key).JSON(), []byte(`"msgtype"`), []byte(`"body":"changed","msgtype"`), 1), "canonical"},
			{"oversized", bytes.Replace(good.JSON(), []byte(`"hostile"`), []byte(`"`+strings.Repeat("x", 70000)+`"`), 1), "larger"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				err := a.srv.fed.ReceivePDU(ctx, tc.raw)
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("want a refusal mentioning %q, got %v", tc.want, err)
				}
				before, err := a.srv.db.Room(ctx, roomID)
				if err != nil {
					t.Fatal(err)
				}
				res := sendRawBytes(t, bb, a, tc.raw)
				// A PDU refused before it could be parsed has no event ID
				// to answer for; the room's frontier shows it was not taken.
				after, err := a.srv.db.Room(ctx, roomID)
				if err != nil {
					t.Fatal(err)
				}
				if fmt.Sprint(after.Extremities) != fmt.Sprint(before.Extremities) {
					t.Fatalf("the room's frontier moved from %v to %v", before.Extremities, after.Extremities)
				}
				// Those parsed far enough to have an event ID are named
				// in the answer, with their error.
				if named := map[string]bool{"bad hash": true, "bad signature": true, "forged origin": true, "sender not in room": true}; named[tc.name] && len(res) != 1 {
					t.Fatalf("/send answered %v, want the refused PDU named", res)
				}
				for id, r := range res {
					if r.Error == "" {
						t.Fatalf("PDU %s accepted over /send", id)
					}
					if _, err := a.srv.db.Event(ctx, id); !errors.Is(err, storage.ErrNotFound) {
						t.Fatalf("refused PDU %s was stored", id)
					}
				}
			})
		}
		// Nothing of it reached Alice's timeline.
		requireNoBody(t, a, alice.AccessToken, room, "changed")

		// send_join: the room in the path must be the event's.
		join := buildOn(t, bb, roomID, "@carol:"+bb.name, "m.room.member", map[string]any{"membership": "join"}, func(p *gomatrixserverlib.ProtoEvent) {
			k := "@carol:" + bb.name
			p.StateKey = &k
		}, bb.name, bb.key)
		fr := fclient.NewFederationRequest(http.MethodPut, spec.ServerName(bb.name), spec.ServerName(a.name),
			"/_matrix/federation/v2/send_join/"+strings.ReplaceAll("!other:"+a.name, ":", "%3A")+"/"+strings.ReplaceAll(join.EventID(), "$", "%24"))
		if err := fr.SetContent(json.RawMessage(join.JSON())); err != nil {
			t.Fatal(err)
		}
		var out map[string]any
		err := doSigned(bb, fr, &out)
		if err == nil {
			t.Fatalf("send_join with a mismatched room was accepted: %v", out)
		}
		if _, err := a.srv.db.Event(ctx, join.EventID()); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("mismatched send_join stored the event")
		}
	})
}

// sendRawBytes sends one PDU from node from to node to exactly as raw
// holds it: the federation client would canonicalise the body (dropping
// a lone surrogate or a duplicate key), so the request is signed over the
// canonical form, as a hostile server's would be, and the raw bytes go on
// the wire.
func sendRawBytes(t *testing.T, from, to *fedNode, raw []byte) map[string]fclient.PDUResult {
	t.Helper()
	body := []byte(fmt.Sprintf(`{"origin":%q,"origin_server_ts":%d,"pdus":[%s]}`, from.name, time.Now().UnixMilli(), raw))
	fr := fclient.NewFederationRequest(http.MethodPut, spec.ServerName(from.name), spec.ServerName(to.name), "/_matrix/federation/v1/send/"+randomString(8))
	canon, err := gomatrixserverlib.CanonicalJSON(body)
	if err != nil {
		t.Fatal(err)
	}
	if err := fr.SetContent(json.RawMessage(canon)); err != nil {
		t.Fatal(err)
	}
	if err := fr.Sign(spec.ServerName(from.name), "ed25519:fed", from.key); err != nil {
		t.Fatal(err)
	}
	req, err := fr.HTTPRequest()
	if err != nil {
		t.Fatal(err)
	}
	req.Body = io.NopCloser(bytes.NewReader(body))
	req.ContentLength = int64(len(body))
	var resp fclient.RespSend
	if err := from.srv.fed.Client().DoRequestAndParseResponse(context.Background(), req, &resp); err != nil {
		t.Fatalf("send: %v", err)
	}
	return resp.PDUs
}

// withDepth rewrites an event's depth (the library refuses to build one
// outside the canonical range, so a hostile peer writes it by hand).
func withDepth(raw []byte, depth string) []byte {
	var m map[string]json.RawMessage
	_ = json.Unmarshal(raw, &m)
	m["depth"] = json.RawMessage(depth)
	out, _ := json.Marshal(m)
	return out
}

func doSigned(n *fedNode, fr fclient.FederationRequest, out any) error {
	if err := fr.Sign(spec.ServerName(n.name), "ed25519:fed", n.key); err != nil {
		return err
	}
	req, err := fr.HTTPRequest()
	if err != nil {
		return err
	}
	return n.srv.fed.Client().DoRequestAndParseResponse(context.Background(), req, out)
}

// requireNoBody fails if any event in room (as seen on node n) has body.
func requireNoBody(t *testing.T, n *fedNode, token string, room id.RoomID, body string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, n.URL+"/_matrix/client/v3/rooms/"+strings.ReplaceAll(string(room), ":", "%3A")+"/messages?dir=b&limit=100", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var page struct {
		Chunk []json.RawMessage `json:"chunk"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&page); err != nil {
		t.Fatal(err)
	}
	for _, e := range page.Chunk {
		if bytes.Contains(e, []byte(body)) || bytes.Contains(e, []byte("@eve:")) || bytes.Contains(e, []byte("@mallory:")) {
			t.Fatalf("a refused event is served to clients: %s", e)
		}
	}
}
