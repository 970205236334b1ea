package homeserver

import (
	"context"
	"errors"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/switchboard-chat/switchboard/homeserver/storage"
)

// The client side of timeline gaps (federation/gaps.go says what a gap is
// and fills one): /messages pages backwards through a gap, /sync cuts a
// timeline at the latest gap it spans.

// gapCursor is a backwards pagination position: events below pos, and
// when inGap, first the first seq events of the gap at pos.
type gapCursor struct {
	pos   int64
	inGap bool
	seq   int
}

func (c gapCursor) token() string {
	if c.inGap {
		return "g" + strconv.FormatInt(c.pos, 10) + "_" + strconv.Itoa(c.seq)
	}
	return posToken(c.pos)
}

// parseGapToken reads a "g<pos>_<n>" token.
func parseGapToken(tok string) (gapCursor, bool) {
	p, n, ok := strings.Cut(strings.TrimPrefix(tok, "g"), "_")
	if !ok || !strings.HasPrefix(tok, "g") {
		return gapCursor{}, false
	}
	pos, err1 := strconv.ParseInt(p, 10, 64)
	seq, err2 := strconv.Atoi(n)
	if err1 != nil || err2 != nil || seq < 0 || seq > 1<<20 || pos <= math.MinInt64+1 {
		return gapCursor{}, false
	}
	return gapCursor{pos: pos, inGap: true, seq: seq}, true
}

// pageBackwards returns up to limit events of roomID going back from cur,
// with the events of the gaps it passes (filled on the way), newest
// first, and the cursor after them.
func (s *Server) pageBackwards(ctx context.Context, roomID string, cur gapCursor, limit int) ([]storage.Event, gapCursor, error) {
	var out []storage.Event
	for len(out) < limit {
		if cur.inGap {
			g, err := s.db.LatestGap(ctx, roomID, cur.pos, cur.pos)
			if errors.Is(err, storage.ErrNotFound) {
				cur = gapCursor{pos: cur.pos}
				continue
			}
			if err != nil {
				return nil, cur, err
			}
			evs, err := s.gapEvents(ctx, g)
			if err != nil {
				return nil, cur, err
			}
			cur.seq = min(cur.seq, len(evs))
			for cur.seq > 0 && len(out) < limit {
				cur.seq--
				out = append(out, evs[cur.seq])
			}
			if cur.seq == 0 && len(out) < limit {
				// Done with the gap. A token at its end still names it
				// ("g<pos>_0") so that the gap is not served again.
				below, err := s.db.Messages(ctx, roomID, cur.pos, true, math.MinInt64, limit-len(out))
				if err != nil {
					return nil, cur, err
				}
				out = append(out, below...)
				if len(below) == 0 {
					return out, cur, nil
				}
				cur = gapCursor{pos: below[len(below)-1].Pos}
			}
			continue
		}
		// The latest gap at or below cur.pos: its events come after the
		// events down to its own (inclusive).
		g, err := s.db.LatestGap(ctx, roomID, math.MinInt64, cur.pos)
		gapFound := err == nil
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			return nil, cur, err
		}
		to := int64(math.MinInt64)
		if gapFound {
			to = g.Pos - 1
		}
		evs, err := s.db.Messages(ctx, roomID, cur.pos, true, to, limit-len(out))
		if err != nil {
			return nil, cur, err
		}
		out = append(out, evs...)
		if len(evs) > 0 {
			cur = gapCursor{pos: evs[len(evs)-1].Pos}
		}
		if len(out) >= limit {
			break
		}
		if !gapFound {
			break // the start of what we hold
		}
		cur = gapCursor{pos: g.Pos, inGap: true, seq: math.MaxInt32}
	}
	return out, cur, nil
}

// gapEvents returns a gap's events oldest first, filling it first when it
// was not yet; the events read as if they sat just before the gap's event
// (their position for history visibility).
func (s *Server) gapEvents(ctx context.Context, g storage.Gap) ([]storage.Event, error) {
	if !s.queries.FillGap(ctx, g) {
		return nil, nil
	}
	ids, err := s.db.GapEvents(ctx, g.EventID)
	if err != nil || len(ids) == 0 {
		return nil, err
	}
	evs, err := s.db.Events(ctx, ids)
	if err != nil {
		return nil, err
	}
	byID := make(map[string]storage.Event, len(evs))
	for _, e := range evs {
		byID[e.EventID] = e
	}
	out := make([]storage.Event, 0, len(ids))
	for _, id := range ids {
		if e, ok := byID[id]; ok {
			e.Pos = g.Pos - 1
			out = append(out, e)
		}
	}
	return out, nil
}

// cutAtGap trims a /sync timeline (oldest first, events with pos in
// (after, upto]) at the latest gap it spans: what is before the gap is
// left for pagination. It reports the gap's position, or false.
func (s *Server) cutAtGap(ctx context.Context, roomID string, evs []storage.Event, after int64) ([]storage.Event, int64, bool, error) {
	if len(evs) == 0 {
		return evs, 0, false, nil
	}
	g, err := s.db.LatestGap(ctx, roomID, after+1, evs[len(evs)-1].Pos)
	if errors.Is(err, storage.ErrNotFound) {
		return evs, 0, false, nil
	}
	if err != nil {
		return nil, 0, false, err
	}
	i := sort.Search(len(evs), func(i int) bool { return evs[i].Pos >= g.Pos })
	return evs[i:], g.Pos, true, nil
}
