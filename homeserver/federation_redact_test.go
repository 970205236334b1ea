package homeserver

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"

	"github.com/switchboard-chat/switchboard/homeserver/storage"
	"github.com/switchboard-chat/switchboard/homeserver/storage/storagetest"
	"github.com/switchboard-chat/switchboard/internal/testkit"
)

// TestFederationRemoteRedaction checks that a redaction from another
// server is applied to its target: at once when the target is known,
// later when the target arrives after it, and not at all when the
// redacter has no power over another server's event.
func TestFederationRemoteRedaction(t *testing.T) {
	fedBackends(t, func(t *testing.T, b storagetest.Backend) {
		p := joinedPair(t, b)
		a, bb, alice, bob, room, ctx := p.a, p.b, p.alice, p.bob, p.room, testCtx(t)
		aliceSync := newFedSyncer(t, alice)
		roomID := string(room)
		redactedOn := func(n *fedNode, eventID string) storage.Event {
			t.Helper()
			e, err := n.srv.db.Event(context.Background(), eventID)
			if err != nil {
				t.Fatal(err)
			}
			return e
		}

		// Bob redacts his own message through his server's client API.
		msg, err := bob.SendText(ctx, room, "regret")
		if err != nil {
			t.Fatal(err)
		}
		aliceSync.waitTimeline(room, bob.UserID, "m.room.message", 1)
		red, err := bob.RedactEvent(ctx, room, msg.EventID)
		if err != nil {
			t.Fatal(err)
		}
		aliceSync.waitTimeline(room, bob.UserID, "m.room.redaction", 1)
		e := redactedOn(a, string(msg.EventID))
		if e.RedactedBy != string(red.EventID) || bytesContain(e.JSON, "regret") {
			t.Fatalf("A's copy is not redacted: redacted_by %q, %s", e.RedactedBy, e.JSON)
		}
		requireNoBody(t, a, alice.AccessToken, room, "regret")

		// A redaction that arrives before its target.
		later := buildOn(t, bb, roomID, string(bob.UserID), "m.room.message", map[string]any{"msgtype": "m.text", "body": "late target"}, nil, bb.name, bb.key)
		early := buildOn(t, bb, roomID, string(bob.UserID), "m.room.redaction", map[string]any{"redacts": later.EventID()}, withRedacts(later.EventID()), bb.name, bb.key)
		if res := sendRaw(t, bb, a, early.JSON()); res[early.EventID()].Error != "" {
			t.Fatalf("redaction refused: %v", res)
		}
		if res := sendRaw(t, bb, a, later.JSON()); res[later.EventID()].Error != "" {
			t.Fatalf("target refused: %v", res)
		}
		if e := redactedOn(a, later.EventID()); e.RedactedBy != early.EventID() || bytesContain(e.JSON, "late target") {
			t.Fatalf("a target that arrived after its redaction is not redacted: %q %s", e.RedactedBy, e.JSON)
		}

		// Bob (power 0) redacting Alice's message: the event is valid,
		// the redaction is not applied.
		hers, err := alice.SendText(ctx, room, "mine to keep")
		if err != nil {
			t.Fatal(err)
		}
		testkit.Eventually(t, 20*time.Second, "alice's message reaches B", func() bool {
			_, err := bb.srv.db.Event(ctx, string(hers.EventID))
			return err == nil
		})
		foreign := buildOn(t, bb, roomID, string(bob.UserID), "m.room.redaction", map[string]any{"redacts": string(hers.EventID)}, withRedacts(string(hers.EventID)), bb.name, bb.key)
		if res := sendRaw(t, bb, a, foreign.JSON()); res[foreign.EventID()].Error != "" {
			t.Fatalf("redaction event refused: %v", res)
		}
		if e := redactedOn(a, string(hers.EventID)); e.RedactedBy != "" || !bytesContain(e.JSON, "mine to keep") {
			t.Fatalf("a powerless redaction of another server's event was applied: %q", e.RedactedBy)
		}
	})
}

// withRedacts sets a redaction's top-level redacts (room versions before
// 11 carry it there; buildOn's content carries it for 11).
func withRedacts(target string) func(*gomatrixserverlib.ProtoEvent) {
	return func(p *gomatrixserverlib.ProtoEvent) { p.Redacts = target }
}

func bytesContain(b []byte, s string) bool { return strings.Contains(string(b), s) }
