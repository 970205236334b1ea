package homeserver

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
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

// fedPair is two federated nodes with alice on a and bob on b, both
// joined to room (created by alice), as both servers see it.
type fedPair struct {
	a, b       *fedNode
	alice, bob *mautrix.Client
	bobSync    *fedSyncer
	room       id.RoomID
}

func joinedPair(t *testing.T, b storagetest.Backend, opts ...func(*Config)) fedPair {
	t.Helper()
	p := fedPair{a: startFedNode(t, b, opts...), b: startFedNode(t, b, opts...)}
	p.alice, p.bob = p.a.user(t, "alice"), p.b.user(t, "bob")
	p.bobSync = newFedSyncer(t, p.bob)
	p.room = joinAcross(t, testCtx(t), p.alice, p.bob, p.bobSync)
	waitJoined(t, p.a, p.room, p.bob.UserID)
	return p
}

// waitVerdict polls node n until eventID has a verdict.
func waitVerdict(t *testing.T, n *fedNode, eventID string) storage.Verdict {
	t.Helper()
	var v storage.Verdict
	testkit.Eventually(t, 20*time.Second, "a verdict on "+eventID, func() bool {
		var err error
		v, err = n.srv.db.EventVerdict(context.Background(), eventID)
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			t.Fatal(err)
		}
		return err == nil
	})
	return v
}

// TestFederationSoftFail bans Bob on A while the link is cut and Bob,
// whose server has not heard of the ban, keeps talking: when the link is
// back his message passes against the state before it but not against
// A's current state, so A soft-fails it. It is kept, but Alice never sees
// it and A does not build on it. Both servers end with Bob banned.
func TestFederationSoftFail(t *testing.T) {
	fedBackends(t, func(t *testing.T, b storagetest.Backend) {
		p := joinedPair(t, b)
		a, bb, alice, bob, room, ctx := p.a, p.b, p.alice, p.bob, p.room, testCtx(t)

		a.cut()
		bb.cut()
		if _, err := alice.BanUser(ctx, room, &mautrix.ReqBanUser{UserID: bob.UserID, Reason: "spam"}); err != nil {
			t.Fatal(err)
		}
		sent, err := bob.SendMessageEvent(ctx, room, event.EventMessage, map[string]any{"msgtype": "m.text", "body": "after the ban"})
		if err != nil {
			t.Fatal(err)
		}
		a.restore()
		bb.restore()

		v := waitVerdict(t, a, string(sent.EventID))
		if v.Verdict != storage.VerdictSoftFailed {
			t.Fatalf("verdict %+v, want soft_failed", v)
		}
		// Kept as an outlier for the DAG, not in the timeline.
		ev, err := a.srv.db.Event(ctx, string(sent.EventID))
		if err != nil || !ev.Outlier {
			t.Fatalf("soft-failed event stored as %+v (%v), want an outlier", ev, err)
		}
		r, err := a.srv.db.Room(ctx, string(room))
		if err != nil {
			t.Fatal(err)
		}
		if slices.Contains(r.Extremities, string(sent.EventID)) {
			t.Fatalf("a soft-failed event is a forward extremity: %v", r.Extremities)
		}
		requireNoBody(t, a, alice.AccessToken, room, "after the ban")
		// Alice's next message is not built on it.
		next, err := alice.SendText(ctx, room, "still here")
		if err != nil {
			t.Fatal(err)
		}
		ne, err := a.srv.db.Event(ctx, string(next.EventID))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(ne.JSON), string(sent.EventID)) {
			t.Fatalf("a new event cites the soft-failed one: %s", ne.JSON)
		}
		// B learnt of the ban too: both end with Bob banned.
		waitMembership(t, bb, room, bob.UserID, "ban")
	})
}

// TestFederationRejectedEventBookkeeping sends an event its auth events
// refuse: it is rejected and remembered; sent again it is refused without
// being stored; an event that cites it as an auth event is rejected too.
func TestFederationRejectedEventBookkeeping(t *testing.T) {
	fedBackends(t, func(t *testing.T, b storagetest.Backend) {
		p := joinedPair(t, b)
		a, bb, alice, bob, room, ctx := p.a, p.b, p.alice, p.bob, p.room, testCtx(t)
		roomID := string(room)

		// Bob (power 0) renames the room: the power levels in its auth
		// events refuse it.
		rename := buildOn(t, bb, roomID, string(bob.UserID), "m.room.name", map[string]any{"name": "taken over"}, stateKeyEmpty, bb.name, bb.key)
		res := sendRaw(t, bb, a, rename.JSON())
		if res[rename.EventID()].Error == "" {
			t.Fatal("an unauthorised rename was accepted")
		}
		v := waitVerdict(t, a, rename.EventID())
		if v.Verdict != storage.VerdictRejected || !strings.Contains(v.Reason, "refuse") {
			t.Fatalf("verdict %+v, want rejected by auth", v)
		}
		res = sendRaw(t, bb, a, rename.JSON())
		if e := res[rename.EventID()].Error; !strings.Contains(e, "rejected before") {
			t.Fatalf("resend answered %q, want the earlier rejection", e)
		}
		if _, err := a.srv.db.Event(ctx, rename.EventID()); !errors.Is(err, storage.ErrNotFound) {
			t.Fatal("a rejected event was stored")
		}
		// An event citing the rejected one among its auth events.
		citing := buildOn(t, bb, roomID, string(bob.UserID), "m.room.message", map[string]any{"msgtype": "m.text", "body": "citing"}, func(p *gomatrixserverlib.ProtoEvent) {
			p.AuthEvents = append(p.AuthEvents.([]string), rename.EventID())
		}, bb.name, bb.key)
		res = sendRaw(t, bb, a, citing.JSON())
		if e := res[citing.EventID()].Error; !strings.Contains(e, "was rejected") {
			t.Fatalf("an event citing a rejected auth event was answered %q", e)
		}
		if v := waitVerdict(t, a, citing.EventID()); v.Verdict != storage.VerdictRejected {
			t.Fatalf("verdict %+v", v)
		}
		requireNoBody(t, a, alice.AccessToken, room, "citing")
		if st, err := a.srv.db.CurrentStateEvent(ctx, roomID, "m.room.name", ""); err == nil && strings.Contains(string(st.JSON), "taken over") {
			t.Fatal("the rejected rename changed the room's name")
		}
	})
}

// waitJoined polls node n until userID is joined to room there.
func waitJoined(t *testing.T, n *fedNode, room id.RoomID, userID id.UserID) {
	t.Helper()
	waitMembership(t, n, room, userID, "join")
}

// waitMembership polls node n until userID's membership of room is want.
func waitMembership(t *testing.T, n *fedNode, room id.RoomID, userID id.UserID, want string) {
	t.Helper()
	testkit.Eventually(t, 20*time.Second, fmt.Sprintf("%s is %s in %s on %s", userID, want, room, n.name), func() bool {
		m, err := n.srv.db.Membership(context.Background(), string(room), string(userID))
		return err == nil && m == want
	})
}

// stateKeyEmpty makes buildOn's event a state event with state_key "".
func stateKeyEmpty(p *gomatrixserverlib.ProtoEvent) {
	k := ""
	p.StateKey = &k
}
