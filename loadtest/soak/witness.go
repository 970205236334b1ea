package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard-chat/switchboard/loadtest/mxclient"
)

// maxBackPages bounds how far a witness pages back through one limited
// timeline (100 events a page).
const maxBackPages = 50

// witness long-polls /sync for one user that never leaves and remembers
// every event ID it has seen per room, and when: the check that
// acknowledged messages are delivered.
//
// A /sync timeline may be limited (spec: Client-Server API, "Syncing":
// "limited: True if the number of events returned was limited by the
// limit on the filter", and a gap a server cannot fill yet). A client
// then pages back with GET /rooms/{roomId}/messages from the timeline's
// prev_batch to fill what lies between; the witness does the same until
// it reaches an event it has seen, so a limited sync is not counted as a
// lost message. How often that happened is a figure of the run.
type witness struct {
	cli *client

	limited atomic.Int64 // limited timelines after the room's first sync
	paged   atomic.Int64 // events first seen by paging back
	pageErr atomic.Int64 // /messages requests that failed

	mu   sync.Mutex
	seen map[string]map[string]time.Time // room → event ID → first seen
}

func newWitness(cli *client) *witness {
	return &witness{cli: cli, seen: make(map[string]map[string]time.Time)}
}

func (w *witness) has(room, eventID string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	_, ok := w.seen[room][eventID]
	return ok
}

// seenAt is when the witness first saw eventID (zero if never).
func (w *witness) seenAt(room, eventID string) time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.seen[room][eventID]
}

// add records events of room; it reports whether any was already known
// and whether the room had been seen before this call.
func (w *witness) add(room string, evs []syncEvent, paged bool) (reached, known bool) {
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	set := w.seen[room]
	known = set != nil
	if set == nil {
		set = make(map[string]time.Time)
		w.seen[room] = set
	}
	for _, ev := range evs {
		if _, ok := set[ev.EventID]; ok {
			reached = true
			continue
		}
		set[ev.EventID] = now
		if paged {
			w.paged.Add(1)
		}
	}
	return reached, known
}

// recorder returns the witness's /sync callback.
func (w *witness) recorder(ctx context.Context, cnt *counters) func(*syncResponse) {
	return func(r *syncResponse) {
		for room, j := range r.Rooms.Join {
			reachedInSync, known := w.add(room, j.Timeline.Events, false)
			// The room's first sync (the witness's initial one) may be
			// limited by the room's history before the load: nothing of
			// the ledger is older.
			if !j.Timeline.Limited || !known {
				continue
			}
			w.limited.Add(1)
			if !reachedInSync && j.Timeline.PrevBatch != "" {
				w.pageBack(ctx, cnt, room, j.Timeline.PrevBatch)
			}
		}
	}
}

// messagesPage is the part of a GET /messages answer the witness reads.
type messagesPage struct {
	Chunk []syncEvent `json:"chunk"`
	End   string      `json:"end"`
}

// pageBack pages backwards from token until it reaches an event the
// witness has seen, the room's start, or maxBackPages.
func (w *witness) pageBack(ctx context.Context, cnt *counters, room, token string) {
	for i := 0; i < maxBackPages && ctx.Err() == nil; i++ {
		q := url.Values{"dir": {"b"}, "from": {token}, "limit": {"100"}}
		cnt.requests.Add(1)
		data, err := w.cli.Do(ctx, http.MethodGet,
			mxclient.ClientAPI+"/rooms/"+url.PathEscape(room)+"/messages?"+q.Encode(), nil)
		var p messagesPage
		if err == nil {
			err = json.Unmarshal(data, &p)
		}
		if err != nil {
			if ctx.Err() == nil {
				w.pageErr.Add(1)
			}
			cnt.fail(ctx, "messages", err)
			return
		}
		reached, _ := w.add(room, p.Chunk, true)
		if reached || len(p.Chunk) == 0 || p.End == "" || p.End == token {
			return
		}
		token = p.End
	}
}

// stored asks the server, as the witness, whether it holds eventID (spec:
// GET /rooms/{roomId}/event/{eventId}): a missing message the server holds
// was lost on the way to the witness's /sync, one it does not hold was
// never stored (or not federated) despite its acknowledgement.
func (w *witness) stored(ctx context.Context, room, eventID string) (bool, error) {
	_, err := w.cli.Do(ctx, http.MethodGet,
		mxclient.ClientAPI+"/rooms/"+url.PathEscape(room)+"/event/"+url.PathEscape(eventID), nil)
	var ae *mxclient.APIError
	if errors.As(err, &ae) && ae.Status == http.StatusNotFound {
		return false, nil
	}
	return err == nil, err
}

// delivery is what the witnesses saw of the ledger.
type delivery struct {
	After30        int     // pairs missing 30 s after the load (the verdict's)
	Missing        int     // pairs still missing extraDrain later
	MissingStored  int     // of those, held by the witness's server
	MissingAbsent  int     // of those, unknown to the witness's server
	MissingUnknown int     // of those, the server's answer was an error
	Late           int     // pairs seen more than lateAfter after the ack
	MaxDelay       float64 // seconds, ack to first seen, over seen pairs
	Limited        int64   // limited timelines the witnesses paged through
	Paged          int64   // events first seen by paging back
	PageErrors     int64
	// ByRoute counts missing and late pairs by route: "A→B" is a message
	// sent on server A that B's witness must see.
	MissingByRoute map[string]int
	LateByRoute    map[string]int
	MissingSamples []string
}

// lateAfter is how long after its acknowledgement a message may take to
// reach a witness before it counts as late.
const lateAfter = 30 * time.Second

// extraDrain is how much longer the run waits for pairs still missing 30 s
// after the load, to tell a slow delivery from a lost one.
const extraDrain = 2 * time.Minute
