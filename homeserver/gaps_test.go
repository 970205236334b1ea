package homeserver

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/matrix-org/gomatrixserverlib"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/switchboard-chat/switchboard/homeserver/storage/storagetest"
)

// TestFederationRejoinGap has bob (server B) leave a room hosted on A,
// alice say 15 things, then invite bob back, and bob rejoin. B never saw
// the 15 messages. Bob's /sync says the timeline is limited, with a
// prev_batch, and paginating /messages from it (5 at a time) fetches the
// 15 with /backfill and returns them in order, between bob's leave and
// the invite, each once (issue 15: "Missed history after leave and
// rejoin"; the room is shared, so bob may see them).
// With "joined" history visibility the gap is paged through the same way
// but bob, who was not in the room then, is shown none of it.
//
// With "hostile", A's /backfill answers also carry the hostile PDUs of
// federation_pulled_hostile_test.go placed inside the gap: none reaches
// bob, and the gap still comes out whole and in order.
func TestFederationRejoinGap(t *testing.T) {
	t.Run("shared", func(t *testing.T) { testRejoinGap(t, "shared", false) })
	t.Run("joined", func(t *testing.T) { testRejoinGap(t, "joined", false) })
	t.Run("hostile", func(t *testing.T) { testRejoinGap(t, "shared", true) })
}

func testRejoinGap(t *testing.T, visibility string, hostile bool) {
	fedBackends(t, func(t *testing.T, b storagetest.Backend) {
		p := joinedPair(t, b)
		a, alice, bob, room, ctx := p.a, p.alice, p.bob, p.room, testCtx(t)
		if _, err := alice.SendStateEvent(ctx, room, event.StateHistoryVisibility, "", map[string]any{"history_visibility": visibility}); err != nil {
			t.Fatal(err)
		}
		if _, err := alice.SendText(ctx, room, "before the leave"); err != nil {
			t.Fatal(err)
		}
		p.bobSync.waitTimeline(room, alice.UserID, "m.room.message", 1)
		if _, err := bob.LeaveRoom(ctx, room); err != nil {
			t.Fatal(err)
		}
		waitMembership(t, a, room, bob.UserID, "leave")
		var missed []string
		var missedID id.EventID
		for i := 0; i < 15; i++ {
			body := fmt.Sprintf("missed %d", i)
			r, err := alice.SendText(ctx, room, body)
			if err != nil {
				t.Fatal(err)
			}
			missed = append(missed, body)
			if i == 7 {
				missedID = r.EventID
			}
		}
		since := p.bobSync.since
		var bad []hostilePDU
		if hostile {
			bad = hostilePDUs(t, a, string(room), string(alice.UserID), func(pe *gomatrixserverlib.ProtoEvent) { pe.Depth -= 3 })
			a.tamper.set(func(path string, body []byte) []byte {
				if strings.Contains(path, "/backfill/") {
					return appendPDUs(t, body, "pdus", rawsOf(bad))
				}
				return body
			})
		}
		if _, err := alice.InviteUser(ctx, room, &mautrix.ReqInviteUser{UserID: bob.UserID}); err != nil {
			t.Fatal(err)
		}
		p.bobSync.until(func(r *mautrix.RespSync) bool { _, ok := r.Rooms.Invite[room]; return ok })
		if _, err := bob.JoinRoomByID(ctx, room); err != nil {
			t.Fatal(err)
		}
		afterRejoin, err := alice.SendText(ctx, room, "after the rejoin")
		if err != nil {
			t.Fatal(err)
		}
		jr := syncUntilEvent(t, bob, since, room, afterRejoin.EventID)
		if !jr.Timeline.Limited || jr.Timeline.PrevBatch == "" {
			t.Fatalf("the timeline after the rejoin is not limited (prev_batch %q)", jr.Timeline.PrevBatch)
		}
		// The gap is just before the invite (the first event B got back).
		if first := jr.Timeline.Events[0]; first.Type != event.StateMember || first.Content.Raw["membership"] != "invite" {
			t.Fatalf("the timeline after the gap starts with %s %v, want bob's invite", first.Type.Type, first.Content.Raw)
		}
		for _, e := range jr.Timeline.Events {
			if e.Type == event.EventMessage && e.Content.Raw["body"] == "before the leave" {
				t.Fatal("the timeline after the gap holds an event from before it")
			}
		}

		// Paginate back from prev_batch until the message before the leave.
		ts := p.b.raw()
		var order []string // newest first
		paginateBack(t, ts, bob.AccessToken, room, jr.Timeline.PrevBatch, 5, map[string]bool{},
			historyOf(bob.UserID, "bob", &order), func() bool { return slices.Contains(order, "before the leave") })
		slices.Reverse(order)
		if hostile {
			requireRefused(t, p.b, bob.AccessToken, room, bad)
		}
		// /event reaches an event fetched into the gap when bob may see it.
		r := ts.do(t, http.MethodGet, "/_matrix/client/v3/rooms/"+url.PathEscape(string(room))+"/event/"+url.PathEscape(string(missedID)), bob.AccessToken, nil)
		if visibility == "joined" && r.Status != http.StatusNotFound || visibility == "shared" && (r.Status != http.StatusOK || !strings.Contains(string(r.Raw), `"missed 7"`)) {
			t.Fatalf("bob's /event on a message of the gap (%s): %d %s", visibility, r.Status, r.Raw)
		}
		want := append([]string{"before the leave", "bob:leave"}, missed...)
		if visibility == "joined" {
			want = want[:2]
			if i := slices.Index(order, "before the leave"); i < 0 || !slices.Equal(order[i:], want) {
				t.Fatalf("paginating through a gap bob may not see gave (oldest first)\n%q\nwant it to end with\n%q", order, want)
			}
			return
		}
		i := slices.Index(order, "before the leave")
		if i < 0 || len(order) < i+len(want) || !slices.Equal(order[i:i+len(want)], want) {
			t.Fatalf("paginating through the gap gave (oldest first)\n%q\nwant a run of\n%q", order, want)
		}
	})
}

// TestFederationOutageGapPaginated loses 30 of Bob's messages on their
// way to A (more than get_missing_events reaches). A takes the message
// after the loss with the state fetched at the gap; Alice's /sync then
// says limited, and paginating /messages from its prev_batch fetches the
// rest with /backfill: all 30, in order, each once.
func TestFederationOutageGapPaginated(t *testing.T) {
	fedBackends(t, func(t *testing.T, b storagetest.Backend) {
		p := joinedPair(t, b)
		a, alice, bob, room, ctx := p.a, p.alice, p.bob, p.room, testCtx(t)
		first, err := alice.SyncRequest(ctx, 0, "", "", false, "")
		if err != nil {
			t.Fatal(err)
		}
		var markers, lost []string
		for i := 0; i < 30; i++ {
			markers = append(markers, fmt.Sprintf(`"lost %d"`, i))
			lost = append(lost, fmt.Sprintf("lost %d", i))
		}
		loseTransactions(t, a, markers, func() {
			for _, body := range lost {
				if _, err := bob.SendText(ctx, room, body); err != nil {
					t.Fatal(err)
				}
			}
		})
		after, err := bob.SendText(ctx, room, "after the gap")
		if err != nil {
			t.Fatal(err)
		}
		jr := syncUntilEvent(t, alice, first.NextBatch, room, after.EventID)
		if jr == nil || !jr.Timeline.Limited || jr.Timeline.PrevBatch == "" {
			t.Fatalf("alice's sync after the outage is not a limited timeline: %+v", jr)
		}
		var order []string // newest first
		seen := map[string]bool{}
		from := jr.Timeline.PrevBatch
		for _, e := range slices.Backward(jr.Timeline.Events) {
			if e.Type == event.EventMessage {
				order = append(order, e.Content.Raw["body"].(string))
				seen[string(e.ID)] = true
			}
		}
		paginateBack(t, p.a.raw(), alice.AccessToken, room, from, 7, seen, func(ev map[string]any) {
			if ev["type"] == "m.room.message" {
				order = append(order, ev["content"].(map[string]any)["body"].(string))
			}
		}, func() bool { return slices.Contains(order, "lost 0") })
		slices.Reverse(order)
		want := append(slices.Clone(lost), "after the gap")
		i := slices.Index(order, "lost 0")
		if i < 0 || len(order) < i+len(want) || !slices.Equal(order[i:i+len(want)], want) {
			t.Fatalf("alice's history after the outage (oldest first)\n%q\nwant a run of\n%q", order, want)
		}
	})
}

// paginateBack pages /messages?dir=b in room from the token from, limit
// events a page and at most 20 pages, and hands each event to visit. It
// stops before a page when done() holds, or when the history ends. seen
// holds the IDs of events already shown: an event served twice fails the
// test, as does an answer other than 200.
func paginateBack(t *testing.T, ts *testServer, token string, room id.RoomID, from string, limit int,
	seen map[string]bool, visit func(ev map[string]any), done func() bool) {
	t.Helper()
	for page := 0; page < 20 && !done(); page++ {
		r := ts.do(t, http.MethodGet, fmt.Sprintf("/_matrix/client/v3/rooms/%s/messages?dir=b&limit=%d&from=%s",
			url.PathEscape(string(room)), limit, url.QueryEscape(from)), token, nil)
		if r.Status != http.StatusOK {
			t.Fatalf("/messages: %d %s", r.Status, r.Raw)
		}
		chunk, _ := r.Body["chunk"].([]any)
		for _, c := range chunk {
			ev, _ := c.(map[string]any)
			eid, _ := ev["event_id"].(string)
			if seen[eid] {
				t.Fatalf("event %s served twice", eid)
			}
			seen[eid] = true
			visit(ev)
		}
		end, _ := r.Body["end"].(string)
		if end == "" {
			return
		}
		from = end
	}
}

// historyOf is a visit for paginateBack that appends to *order each
// message's body and each membership of user, as "label:membership".
// A PDU whose hash did not match is kept redacted (no body) and left out.
func historyOf(user id.UserID, label string, order *[]string) func(ev map[string]any) {
	return func(ev map[string]any) {
		content, _ := ev["content"].(map[string]any)
		switch ev["type"] {
		case "m.room.message":
			if body, ok := content["body"].(string); ok {
				*order = append(*order, body)
			}
		case "m.room.member":
			if ev["state_key"] == string(user) {
				*order = append(*order, label+":"+content["membership"].(string))
			}
		}
	}
}
