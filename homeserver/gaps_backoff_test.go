package homeserver

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"maunium.net/go/mautrix"

	"github.com/switchboard-chat/switchboard/homeserver/storage/storagetest"
)

// TestFederationGapFillBackoff leaves a rejoin gap on B that A's broken
// /backfill answers cannot fill. Paginating through it asks A once, then
// not again until 30 s have passed on B's (test) clock, then not for 60 s
// more; once A answers again and the wait is over, the gap fills and
// pagination returns the missed messages.
func TestFederationGapFillBackoff(t *testing.T) {
	fedBackends(t, func(t *testing.T, b storagetest.Backend) {
		var offset atomic.Int64 // B's clock runs this far ahead
		advance := func(d time.Duration) { offset.Add(int64(d)) }
		a := startFedNode(t, b)
		bb := startFedNode(t, b, func(c *Config) {
			c.Now = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
		})
		ctx := testCtx(t)
		alice, bob := a.user(t, "alice"), bb.user(t, "bob")
		bobSync := newFedSyncer(t, bob)
		room := joinAcross(t, ctx, alice, bob, bobSync)
		waitJoined(t, a, room, bob.UserID)
		if _, err := bob.LeaveRoom(ctx, room); err != nil {
			t.Fatal(err)
		}
		waitMembership(t, a, room, bob.UserID, "leave")
		for i := 0; i < 5; i++ {
			if _, err := alice.SendText(ctx, room, fmt.Sprintf("missed %d", i)); err != nil {
				t.Fatal(err)
			}
		}
		since := bobSync.since
		if _, err := alice.InviteUser(ctx, room, &mautrix.ReqInviteUser{UserID: bob.UserID}); err != nil {
			t.Fatal(err)
		}
		bobSync.until(func(r *mautrix.RespSync) bool { _, ok := r.Rooms.Invite[room]; return ok })
		var backfills atomic.Int32
		var broken atomic.Bool
		broken.Store(true)
		a.tamper.set(func(path string, body []byte) []byte {
			if strings.Contains(path, "/backfill/") {
				backfills.Add(1)
				if broken.Load() {
					return []byte(`{"pdus":"not a list"}`)
				}
			}
			return body
		})
		if _, err := bob.JoinRoomByID(ctx, room); err != nil {
			t.Fatal(err)
		}
		after, err := alice.SendText(ctx, room, "after the rejoin")
		if err != nil {
			t.Fatal(err)
		}
		jr := syncUntilEvent(t, bob, since, room, after.EventID)
		if jr == nil || !jr.Timeline.Limited || jr.Timeline.PrevBatch == "" {
			t.Fatalf("no limited timeline with a prev_batch after the rejoin: %+v", jr)
		}
		ts := bb.raw()
		// One page back from prev_batch (a full page, so that no
		// start-of-timeline backfill is asked): the missed bodies in it.
		page := func() int {
			r := ts.do(t, http.MethodGet, "/_matrix/client/v3/rooms/"+url.PathEscape(string(room))+"/messages?dir=b&limit=3&from="+url.QueryEscape(jr.Timeline.PrevBatch), bob.AccessToken, nil)
			if r.Status != http.StatusOK {
				t.Fatalf("/messages: %d %s", r.Status, r.Raw)
			}
			return strings.Count(string(r.Raw), `"missed `)
		}
		step := func(what string, wantAsks int32) {
			t.Helper()
			n := page()
			if got := backfills.Load(); got != wantAsks {
				t.Fatalf("%s: A was asked %d times for the gap, want %d", what, got, wantAsks)
			}
			if n != 0 {
				t.Fatalf("%s: %d missed messages served from a gap A never filled", what, n)
			}
		}
		step("first pagination", 1)
		step("again at once", 1)
		advance(29 * time.Second)
		step("after 29 s", 1)
		advance(2 * time.Second)
		step("after 31 s", 2)
		advance(31 * time.Second)
		step("31 s after the second failure", 2)
		advance(30 * time.Second)
		step("61 s after the second failure", 3)
		broken.Store(false)
		advance(2 * time.Minute)
		if n := page(); n != 3 {
			t.Fatalf("once A answers, the page through the gap holds %d missed messages, want 3", n)
		}
		if got := backfills.Load(); got != 4 {
			t.Fatalf("A was asked %d times in all, want 4", got)
		}
	})
}
