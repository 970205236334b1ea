package homeserver

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/switchboard-chat/switchboard/homeserver/storage"
	"github.com/switchboard-chat/switchboard/homeserver/storage/storagetest"
)

// notaryQuery asks node at's notary for server's keys (spec: Server-Server
// API, "GET /_matrix/key/v2/query/{serverName}") through from's transport
// and returns the documents it served.
func notaryQuery(t *testing.T, ctx context.Context, from, at *fedNode, server, query string) []json.RawMessage {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "matrix://"+at.name+"/_matrix/key/v2/query/"+server+query, nil)
	resp, err := (&http.Client{Transport: from.srv.fed.Transport(), Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("notary query: %v", err)
	}
	defer resp.Body.Close()
	var out struct {
		ServerKeys []json.RawMessage `json:"server_keys"`
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("notary query: status %d", resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("notary answer: %v", err)
	}
	return out.ServerKeys
}

// TestFederationRemoteKeysSurviveRestart: A learns B's key while B is up;
// A restarts and B goes away for good. A still vouches for B's key as a
// notary and still verifies an event B signed, which a third server C
// delivers; an event with a bad B signature is still refused.
func TestFederationRemoteKeysSurviveRestart(t *testing.T) {
	fedBackends(t, func(t *testing.T, b storagetest.Backend) {
		a, bb, c := startFedNode(t, b), startFedNode(t, b), startFedNode(t, b)
		ctx := testCtx(t)
		alice, bob := a.user(t, "alice"), bb.user(t, "bob")
		bobSync := newFedSyncer(t, bob)
		room := joinAcross(t, ctx, alice, bob, bobSync)
		roomID := string(room)

		// A checked Bob's join with B's key: it is in A's database.
		row, err := a.srv.db.ServerKey(ctx, bb.name, "ed25519:fed")
		if err != nil {
			t.Fatalf("B's key was not stored: %v", err)
		}
		if !ed25519.PublicKey(row.PublicKey).Equal(bb.key.Public()) || row.ExpiredTS != 0 || row.ValidUntilTS <= time.Now().UnixMilli() {
			t.Fatalf("stored key row %+v", row)
		}

		// Events B signs now, delivered after B is gone.
		msg := map[string]any{"msgtype": "m.text", "body": "signed before the outage"}
		late := buildOn(t, bb, roomID, string(bob.UserID), "m.room.message", msg, nil, bb.name, bb.key)
		_, wrongKey, _ := ed25519.GenerateKey(rand.Reader)
		forged := buildOn(t, bb, roomID, string(bob.UserID), "m.room.message", map[string]any{"msgtype": "m.text", "body": "forged"}, nil, bb.name, wrongKey)

		bb.stop()
		a.stop()
		a.restart()

		// The notary serves B's document, signed by B and counter-signed
		// by A: from the database, since A's memory is new. A minimum
		// validity beyond the cached document makes A try B, which is
		// down: the cached document is served all the same.
		for _, q := range []string{"", "?minimum_valid_until_ts=" + itoa(time.Now().Add(1000*time.Hour).UnixMilli())} {
			docs := notaryQuery(t, ctx, c, a, bb.name, q)
			if len(docs) != 1 {
				t.Fatalf("notary%s served %d documents for B, want 1", q, len(docs))
			}
			if err := gomatrixserverlib.VerifyJSON(bb.name, "ed25519:fed", bb.key.Public().(ed25519.PublicKey), docs[0]); err != nil {
				t.Fatalf("notary%s: B's signature: %v", q, err)
			}
			if err := gomatrixserverlib.VerifyJSON(a.name, "ed25519:fed", a.key.Public().(ed25519.PublicKey), docs[0]); err != nil {
				t.Fatalf("notary%s: A's counter-signature: %v", q, err)
			}
		}
		// A server A never heard of and cannot reach: nothing to vouch for.
		if docs := notaryQuery(t, ctx, c, a, "127.0.0.1:1", ""); len(docs) != 0 {
			t.Fatalf("notary vouched for an unknown server: %s", docs)
		}

		// C delivers B's events: the one B signed is verified with the
		// stored key and stored; the forged one is refused.
		res := sendRaw(t, c, a, late.JSON(), forged.JSON())
		if e := res[late.EventID()].Error; e != "" {
			t.Fatalf("an event signed by B was refused after the restart: %s", e)
		}
		if _, err := a.srv.db.Event(ctx, late.EventID()); err != nil {
			t.Fatalf("B's event was not stored: %v", err)
		}
		// (/send leaves out of its answer an event it cannot parse and
		// check: a refusal shows as an error or as no entry.)
		if r, ok := res[forged.EventID()]; ok && r.Error == "" {
			t.Fatalf("a badly signed event was accepted")
		}
		if err := a.srv.fed.ReceivePDU(ctx, forged.JSON()); err == nil || !strings.Contains(err.Error(), "signature") {
			t.Fatalf("checking the badly signed event: %v, want a signature refusal", err)
		}
		if _, err := a.srv.db.Event(ctx, forged.EventID()); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("the forged event was stored: %v", err)
		}
	})
}

// TestFederationExpiredRemoteKeyRefetched: a key whose valid_until_ts has
// passed is fetched again when a signature needs a later time (spec:
// Server-Server API, "Retrieving server keys"; room versions 5+ hold
// signatures to valid_until_ts), the new validity is stored, and after a
// restart with the server down the stored validity still bounds what the
// key verifies.
func TestFederationExpiredRemoteKeyRefetched(t *testing.T) {
	fedBackends(t, func(t *testing.T, b storagetest.Backend) {
		// B's clock runs one hour minus two seconds slow, so its key
		// document (valid for an hour by its clock) is valid for two more
		// seconds by ours, until the skew is taken away.
		var skew atomic.Int64
		skew.Store(int64(-time.Hour + 2*time.Second))
		a := startFedNode(t, b)
		bb := startFedNode(t, b, func(c *Config) {
			c.Federation.KeyValidity = time.Hour
			c.Now = func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
		})
		ctx := testCtx(t)
		verify := func(atTS time.Time) error {
			t.Helper()
			msg, err := gomatrixserverlib.SignJSON(bb.name, "ed25519:fed", bb.key, []byte(`{"at":`+itoa(atTS.UnixMilli())+`}`))
			if err != nil {
				t.Fatal(err)
			}
			res, err := a.srv.fed.KeyRing().VerifyJSONs(ctx, []gomatrixserverlib.VerifyJSONRequest{{
				ServerName: spec.ServerName(bb.name), AtTS: spec.AsTimestamp(atTS), Message: msg,
				ValidityCheckingFunc: gomatrixserverlib.StrictValiditySignatureCheck,
			}})
			if err != nil {
				return err
			}
			return res[0].Error
		}
		stored := func() int64 {
			t.Helper()
			row, err := a.srv.db.ServerKey(ctx, bb.name, "ed25519:fed")
			if err != nil {
				t.Fatalf("stored key: %v", err)
			}
			return row.ValidUntilTS
		}

		if err := verify(time.Now()); err != nil {
			t.Fatalf("first verification: %v", err)
		}
		first := stored()
		if until := time.UnixMilli(first); until.After(time.Now().Add(5 * time.Second)) {
			t.Fatalf("first document valid until %v, expected within seconds", until)
		}
		// Wait, polling the clock, until the first document is stale.
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().UnixMilli() <= first {
			if time.Now().After(deadline) {
				t.Fatal("clock did not pass valid_until_ts")
			}
			time.Sleep(20 * time.Millisecond)
		}
		skew.Store(0)
		if err := verify(time.Now()); err != nil {
			t.Fatalf("verification after valid_until_ts: %v", err)
		}
		second := stored()
		if second <= first+int64(30*time.Minute/time.Millisecond) {
			t.Fatalf("refetched key valid until %d, not later than %d by the new document's hour", second, first)
		}

		bb.stop()
		a.stop()
		a.restart()
		if err := verify(time.Now()); err != nil {
			t.Fatalf("after restart, B down: %v", err)
		}
		if err := verify(time.UnixMilli(second).Add(time.Minute)); err == nil {
			t.Fatal("a signature after the stored valid_until_ts was accepted with B down")
		}
	})
}
