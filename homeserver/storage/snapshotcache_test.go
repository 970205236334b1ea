package storage

import (
	"fmt"
	"testing"
)

// TestSnapshotCacheBoundedByEntries: snapshots that grow (a room whose
// member list only grows) never make the cache hold more state entries
// than its bound, a cached snapshot is served without loading, and one
// snapshot over the bound alone is not cached.
func TestSnapshotCacheBoundedByEntries(t *testing.T) {
	var c snapshotCache
	state := func(n int) StateMap {
		m := make(StateMap, n)
		for i := range n {
			m[StateKey{Type: "m.room.member", StateKey: fmt.Sprintf("@u%d:x", i)}] = fmt.Sprintf("$e%d", i)
		}
		return m
	}
	loads := 0
	for id := int64(1); id <= 400; id++ {
		if _, err := c.get(id, func() (StateMap, error) { loads++; return state(int(id) * 10), nil }); err != nil {
			t.Fatal(err)
		}
		c.mu.Lock()
		entries, sum := c.entries, 0
		for _, s := range c.m {
			sum += len(s)
		}
		c.mu.Unlock()
		if entries != sum || entries > snapshotCacheEntries {
			t.Fatalf("after snapshot %d: %d entries counted, %d held, bound %d", id, entries, sum, snapshotCacheEntries)
		}
	}
	if _, err := c.get(400, func() (StateMap, error) { t.Fatal("snapshot 400 loaded again"); return nil, nil }); err != nil {
		t.Fatal(err)
	}
	big := int64(1000)
	for range 2 {
		if _, err := c.get(big, func() (StateMap, error) { loads++; return state(snapshotCacheEntries + 1), nil }); err != nil {
			t.Fatal(err)
		}
	}
	if loads != 402 {
		t.Errorf("%d loads, want 402 (400 snapshots, and the oversized one twice)", loads)
	}
}
