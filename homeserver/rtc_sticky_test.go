package homeserver

import (
	"crypto/ed25519"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"

	"github.com/switchboard-chat/switchboard/homeserver/storage/storagetest"
)

// stickyOf returns the msc4354_sticky duration and unsigned TTL of a
// client-format event (-1 for absent).
func stickyOf(ev map[string]any) (duration, ttl float64) {
	duration, ttl = -1, -1
	if st, ok := ev["msc4354_sticky"].(map[string]any); ok {
		duration, _ = st["duration_ms"].(float64)
	}
	if u, ok := ev["unsigned"].(map[string]any); ok {
		if v, ok := u["msc4354_sticky_duration_ttl_ms"].(float64); ok {
			ttl = v
		}
	}
	return duration, ttl
}

// TestStickyEvents: a sticky event is a PDU with msc4354_sticky whose
// hash, signature and ID are right; /sync hands it out in the sticky
// section when the timeline is limited, until it expires.
func TestStickyEvents(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b storagetest.Backend) {
		clk := newTestClock()
		ts := newTestServer(t, b, func(c *Config) { c.Now = clk.Now })
		alice, bob := ts.user(t, "alice"), ts.user(t, "bob")
		room := delayedRoom(t, alice, bob)
		send := "/_matrix/client/v3/rooms/" + url.PathEscape(room) + "/send/"
		r := ts.do(t, http.MethodPut, send+"m.rtc.member/s1?org.matrix.msc4354.sticky_duration_ms=600000", alice.AccessToken,
			map[string]any{"msc4354_sticky_key": "alice-dev", "application": map[string]any{"type": "m.call"}})
		wantStatus(t, r, http.StatusOK, "")
		stickyID, _ := r.Body["event_id"].(string)

		// The stored PDU: the sticky key is covered by the content hash,
		// the signature verifies and the event ID is the reference hash.
		stored, err := ts.db.Event(testCtx(t), stickyID)
		if err != nil {
			t.Fatal(err)
		}
		ver := gomatrixserverlib.MustGetRoomVersion(gomatrixserverlib.RoomVersionV11)
		pdu, err := ver.NewEventFromUntrustedJSON(stored.JSON)
		if err != nil {
			t.Fatal(err)
		}
		if pdu.EventID() != stickyID {
			t.Fatalf("event ID %s, reference hash gives %s", stickyID, pdu.EventID())
		}
		if !strings.Contains(string(pdu.JSON()), `"msc4354_sticky":{"duration_ms":600000}`) {
			t.Fatalf("content hash does not cover the sticky key (redacted on parse): %s", pdu.JSON())
		}
		redacted, err := ver.RedactEventJSON(stored.JSON)
		if err != nil {
			t.Fatal(err)
		}
		pub := ts.cfg.SigningKey.Public().(ed25519.PublicKey)
		if err := gomatrixserverlib.VerifyJSON("test.local", "ed25519:test", pub, redacted); err != nil {
			t.Fatalf("signature: %v", err)
		}

		// Three ordinary messages push it out of a one-event timeline.
		for i := range 3 {
			wantStatus(t, ts.do(t, http.MethodPut, send+"m.room.message/m"+string(rune('0'+i)), alice.AccessToken,
				map[string]any{"msgtype": "m.text", "body": "hi"}), http.StatusOK, "")
		}
		clk.Advance(time.Minute)
		filter := url.QueryEscape(`{"room":{"timeline":{"limit":1}}}`)
		syncRoom := func() map[string]any {
			s := ts.do(t, http.MethodGet, "/_matrix/client/v3/sync?filter="+filter, bob.AccessToken, nil)
			wantStatus(t, s, http.StatusOK, "")
			rooms, _ := s.Body["rooms"].(map[string]any)
			join, _ := rooms["join"].(map[string]any)
			jr, _ := join[room].(map[string]any)
			return jr
		}
		jr := syncRoom()
		st, _ := jr["msc4354_sticky"].(map[string]any)
		evs, _ := st["events"].([]any)
		if len(evs) != 1 {
			t.Fatalf("sticky section %v, want the one sticky event", jr["msc4354_sticky"])
		}
		ev, _ := evs[0].(map[string]any)
		if ev["event_id"] != stickyID {
			t.Fatalf("sticky event %v, want %s", ev["event_id"], stickyID)
		}
		if d, ttl := stickyOf(ev); d != 600000 || ttl != 540000 {
			t.Fatalf("sticky duration %v ttl %v, want 600000 and 540000", d, ttl)
		}

		// Expired: no section, no TTL.
		clk.Advance(10 * time.Minute)
		if jr := syncRoom(); jr["msc4354_sticky"] != nil {
			t.Fatalf("expired sticky event still in /sync: %v", jr["msc4354_sticky"])
		}
		got := ts.do(t, http.MethodGet, "/_matrix/client/v3/rooms/"+url.PathEscape(room)+"/event/"+url.PathEscape(stickyID), bob.AccessToken, nil)
		wantStatus(t, got, http.StatusOK, "")
		if d, ttl := stickyOf(got.Body); d != 600000 || ttl != -1 {
			t.Fatalf("expired: duration %v ttl %v, want 600000 and no TTL", d, ttl)
		}

		// Delayed and sticky at once (Element Call's delayed leave as an
		// m.rtc.member): sticky once sent.
		r = ts.do(t, http.MethodPut, send+"m.rtc.member/s2?org.matrix.msc4354.sticky_duration_ms=7200000&org.matrix.msc4140.delay=1000",
			alice.AccessToken, map[string]any{"msc4354_sticky_key": "alice-dev"})
		wantStatus(t, r, http.StatusOK, "")
		clk.Advance(2 * time.Second)
		ts.delayed.pass(testCtx(t))
		jr = syncRoom()
		tl, _ := jr["timeline"].(map[string]any)
		tevs, _ := tl["events"].([]any)
		if len(tevs) != 1 {
			t.Fatalf("timeline %v", tl)
		}
		if d, _ := stickyOf(tevs[0].(map[string]any)); d != 3600000 {
			t.Fatalf("delayed sticky event: duration %v, want 3600000 (clamped)", d)
		}

		for _, q := range []string{"-1", "x", ""} {
			wantStatus(t, ts.do(t, http.MethodPut, send+"m.rtc.member/bad"+q+"?org.matrix.msc4354.sticky_duration_ms="+q, alice.AccessToken, map[string]any{}),
				http.StatusBadRequest, "M_INVALID_PARAM")
		}
	})
}

// TestStickyEventFederated: a sticky event crosses to another server with
// its msc4354_sticky intact (the receiving server checks the content hash
// and signature that cover it) and is sticky there too.
func TestStickyEventFederated(t *testing.T) {
	fedBackends(t, func(t *testing.T, b storagetest.Backend) {
		a, bb := startFedNode(t, b), startFedNode(t, b)
		ctx := testCtx(t)
		alice, bob := a.user(t, "alice"), bb.user(t, "bob")
		bobSync := newFedSyncer(t, bob)
		room := joinAcross(t, ctx, alice, bob, bobSync)
		ta, tb := &testServer{Server: a.srv, URL: a.URL}, &testServer{Server: bb.srv, URL: bb.URL}
		r := ta.do(t, http.MethodPut, "/_matrix/client/v3/rooms/"+url.PathEscape(room.String())+"/send/m.rtc.member/s1?org.matrix.msc4354.sticky_duration_ms=300000",
			alice.AccessToken, map[string]any{"msc4354_sticky_key": "k"})
		wantStatus(t, r, http.StatusOK, "")
		got := bobSync.waitTimeline(room, alice.UserID, "m.rtc.member", 1)
		ev := tb.do(t, http.MethodGet, "/_matrix/client/v3/rooms/"+url.PathEscape(room.String())+"/event/"+url.PathEscape(got[0].ID.String()), bob.AccessToken, nil)
		wantStatus(t, ev, http.StatusOK, "")
		if d, ttl := stickyOf(ev.Body); d != 300000 || ttl <= 0 || ttl > 300000 {
			t.Fatalf("on the receiving server: duration %v ttl %v", d, ttl)
		}
		if got[0].ID.String() != r.Body["event_id"] {
			t.Fatalf("event ID %s there, %v here", got[0].ID, r.Body["event_id"])
		}
	})
}
