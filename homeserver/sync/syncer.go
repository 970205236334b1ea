package sync

import (
	"context"
	"fmt"
	"time"

	"github.com/switchboard-chat/switchboard/homeserver/storage"
	"github.com/switchboard-chat/switchboard/internal/clock"
)

// MaxTimeout caps a long-poll; clients ask for 30 s typically.
const MaxTimeout = 5 * time.Minute

// Config is what a Syncer needs; every field is required.
type Config struct {
	Store     Store
	Notifier  Notifier
	Ephemeral Ephemeral
	Clock     clock.Clock
	// Shutdown, once closed, ends every long-poll at once (the server is
	// draining).
	Shutdown <-chan struct{}

	Visibility Visibility
	Formatter  Formatter
	Gaps       Gaps
	Sticky     Sticky
	PushRules  PushRules
	Presence   PresenceScanner
}

// Syncer builds /sync responses from its streams and runs long-polls.
type Syncer struct {
	cfg     Config
	streams []Stream
}

// New checks cfg and returns a Syncer with the streams in response order.
func New(cfg Config) (*Syncer, error) {
	for name, v := range map[string]any{"Store": cfg.Store, "Notifier": cfg.Notifier, "Ephemeral": cfg.Ephemeral,
		"Clock": cfg.Clock, "Shutdown": cfg.Shutdown, "Visibility": cfg.Visibility, "Formatter": cfg.Formatter,
		"Gaps": cfg.Gaps, "Sticky": cfg.Sticky, "PushRules": cfg.PushRules, "Presence": cfg.Presence} {
		if isNil(v) {
			return nil, fmt.Errorf("%w: %s is required", ErrConfig, name)
		}
	}
	db, n := cfg.Store, cfg.Notifier
	return &Syncer{cfg: cfg, streams: []Stream{
		// The room streams first, in this order: typing and receipts add
		// to the rooms the rooms stream built, unread counts go to every
		// room the three bring.
		&roomsStream{store: db, notes: n, vis: cfg.Visibility, format: cfg.Formatter, gaps: cfg.Gaps, sticky: cfg.Sticky},
		&typingStream{eph: cfg.Ephemeral},
		&receiptsStream{store: db, notes: n},
		&unreadStream{store: db, notes: n},
		&accountDataStream{store: db, notes: n, rules: cfg.PushRules},
		&toDeviceStream{store: db, notes: n},
		&deviceListStream{store: db, notes: n},
		&presenceStream{store: db, eph: cfg.Ephemeral, scanner: cfg.Presence, now: cfg.Clock.Now},
	}}, nil
}

func isNil(v any) bool {
	if v == nil {
		return true
	}
	if c, ok := v.(<-chan struct{}); ok {
		return c == nil
	}
	return false
}

// Build assembles the response to req for storage positions up to
// committed, and reports whether it holds nothing new for an incremental
// sync.
func (s *Syncer) Build(ctx context.Context, req *Request, committed int64) (*Response, bool, error) {
	req.Response = NewResponse()
	req.rooms = nil
	var next Token
	news := false
	for _, st := range s.streams {
		id := st.ID()
		latest := st.Latest(ctx, committed)
		var from int64
		if req.Since != nil {
			from = req.Since.Get(id)
		}
		pos, has, err := st.Fill(ctx, req, from, latest)
		if err != nil {
			return nil, false, err
		}
		next.Set(id, pos)
		news = news || has
	}
	req.Response.NextBatch = next.String()
	return req.Response, !news && !req.Initial(), nil
}

// Sync answers req: at once for an initial sync or when something is
// new, else when something new arrives, timeout passes, the server shuts
// down (the empty response then) or ctx ends (its error).
func (s *Syncer) Sync(ctx context.Context, req *Request, timeout time.Duration) (*Response, error) {
	if req.Since == nil {
		timeout = 0
	}
	var resp *Response
	err := s.LongPoll(ctx, req.UserID, timeout, func(ctx context.Context, committed int64, ms []storage.RoomMembership) (bool, error) {
		req.Memberships = ms
		req.NowMS = s.cfg.Clock.Now().UnixMilli()
		r, empty, err := s.Build(ctx, req, committed)
		resp = r
		return empty, err
	})
	return resp, err
}
