package federation

import (
	"fmt"
	"strings"
	"testing"

	"github.com/matrix-org/gomatrixserverlib"
)

// topoPDU makes an unsigned room v10 PDU with the given prev events and
// depth (trusted JSON: topoOrder reads only the DAG fields). The sender
// carries the name, so that event IDs differ (the reference hash leaves
// content out).
func topoPDU(t *testing.T, name string, depth int64, prevs ...string) gomatrixserverlib.PDU {
	t.Helper()
	q := make([]string, len(prevs))
	for i, p := range prevs {
		q[i] = `"` + p + `"`
	}
	raw := fmt.Sprintf(`{"type":"m.room.message","room_id":"!r:x","sender":"@%s:x","origin_server_ts":1,"depth":%d,`+
		`"prev_events":[%s],"auth_events":[],"content":{"body":%q},"hashes":{"sha256":"x"},"signatures":{}}`,
		name, depth, strings.Join(q, ","), name)
	ver, err := gomatrixserverlib.GetRoomVersion(gomatrixserverlib.RoomVersionV10)
	if err != nil {
		t.Fatal(err)
	}
	p, err := ver.NewEventFromTrustedJSON([]byte(raw), false)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestTopoOrder: an event comes after its prev events even when its depth
// says otherwise (a server may send any depth), and events ready at the
// same time go by depth, then event ID.
func TestTopoOrder(t *testing.T) {
	root := topoPDU(t, "root", 5, "$outside")
	// b claims a lower depth than its prev event a.
	a := topoPDU(t, "a", 9, root.EventID())
	b := topoPDU(t, "b", 2, a.EventID())
	// c and d are concurrent, same depth: event ID decides.
	c := topoPDU(t, "c", 6, root.EventID())
	d := topoPDU(t, "d", 6, root.EventID())
	merge := topoPDU(t, "merge", 10, b.EventID(), c.EventID(), d.EventID())
	body := func(p gomatrixserverlib.PDU) string {
		s := string(p.Content())
		return s[strings.Index(s, `:"`)+2 : len(s)-2]
	}
	first, second := c, d
	if d.EventID() < c.EventID() {
		first, second = d, c
	}
	// Ready after root: a (9), c (6), d (6) -> c/d first by depth; then a,
	// then b (unblocked by a; depth 2 is lowest), then merge.
	want := []string{"root", body(first), body(second), "a", "b", "merge"}
	for _, in := range [][]gomatrixserverlib.PDU{
		{merge, d, c, b, a, root},
		{root, a, b, c, d, merge},
		{b, merge, root, d, a, c},
	} {
		var got []string
		for _, p := range topoOrder(in) {
			got = append(got, body(p))
		}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Fatalf("order %v, want %v", got, want)
		}
	}
	// A prev event outside the batch holds nothing back; none is lost.
	if got := topoOrder([]gomatrixserverlib.PDU{a, root}); len(got) != 2 || got[0] != root {
		t.Fatalf("order of root and a: %v", got)
	}
}
