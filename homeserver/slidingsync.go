package homeserver

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/switchboard-chat/switchboard/homeserver/storage"
	hsync "github.com/switchboard-chat/switchboard/homeserver/sync"
)

// Simplified sliding sync (MSC4186, the successor of MSC3575 that
// Element X speaks), at POST
// /_matrix/client/unstable/org.matrix.simplified_msc3575/sync.
//
// The client names lists of rooms (with filters and index ranges over
// the rooms sorted by bump_stamp, newest first) and explicit room
// subscriptions; the server answers with each list's count and, for the
// rooms in range, what the client has not seen: on first sight the
// required_state and the last timeline_limit events ("initial"), later
// only the new events and state. Which rooms a connection has seen, and
// at which position, lives in memory per (user, device, conn_id); a pos
// the server does not know (after a restart, or an evicted connection)
// answers 400 M_UNKNOWN_POS and the client starts over, as the MSC
// specifies. The streams themselves are /sync's: the same storage reads,
// notifier keys, positions (homeserver/sync's Token), long-poll and
// formatting.
//
// This file holds the request shapes and the connection store;
// slidingsync_rooms.go builds rooms and lists, slidingsync_ext.go the
// extensions.

const (
	// ssMaxRanges bounds the ranges of one list, ssMaxLists the lists and
	// subscriptions of one request, ssMaxRequiredState the
	// required_state pairs of one list.
	ssMaxRanges        = 16
	ssMaxLists         = 64
	ssMaxRequiredState = 128
	// ssMaxTimeline caps timeline_limit.
	ssMaxTimeline = 100
	// ssConnTTL is how long an unused connection is kept.
	ssConnTTL = 30 * time.Minute
	// ssMaxConnsPerDevice bounds one device's connections.
	ssMaxConnsPerDevice = 16
)

// ssRoomConfig is what a list or subscription asks for each of its rooms.
type ssRoomConfig struct {
	RequiredState [][2]string `json:"required_state"`
	TimelineLimit int         `json:"timeline_limit"`
}

// ssFilters are a list's filters (MSC4186 "filters").
type ssFilters struct {
	IsDM         *bool     `json:"is_dm"`
	IsEncrypted  *bool     `json:"is_encrypted"`
	IsInvite     *bool     `json:"is_invite"`
	RoomTypes    []*string `json:"room_types"`
	NotRoomTypes []*string `json:"not_room_types"`
	Tags         []string  `json:"tags"`
	NotTags      []string  `json:"not_tags"`
}

// ssList is one requested list.
type ssList struct {
	ssRoomConfig
	Ranges  [][2]int  `json:"ranges"`
	Filters ssFilters `json:"filters"`
}

// ssExtensions are the requested extensions; each is off unless enabled.
type ssExtensions struct {
	ToDevice struct {
		Enabled *bool  `json:"enabled"`
		Since   string `json:"since"`
		Limit   int    `json:"limit"`
	} `json:"to_device"`
	E2EE struct {
		Enabled *bool `json:"enabled"`
	} `json:"e2ee"`
	AccountData struct {
		Enabled *bool `json:"enabled"`
	} `json:"account_data"`
	Receipts struct {
		Enabled *bool `json:"enabled"`
	} `json:"receipts"`
	Typing struct {
		Enabled *bool `json:"enabled"`
	} `json:"typing"`
}

func on(b *bool) bool { return b != nil && *b }

// ssRequest is the request body.
type ssRequest struct {
	ConnID            string                  `json:"conn_id"`
	TxnID             string                  `json:"txn_id"`
	Lists             map[string]ssList       `json:"lists"`
	RoomSubscriptions map[string]ssRoomConfig `json:"room_subscriptions"`
	Extensions        ssExtensions            `json:"extensions"`
}

// parseSlidingSync validates a request body.
func parseSlidingSync(body []byte) (ssRequest, error) {
	var req ssRequest
	if len(body) == 0 {
		return req, nil
	}
	if !json.Valid(body) {
		return req, errNotJSON("Content not JSON.")
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return req, errBadJSON("%v", err)
	}
	if len(req.Lists)+len(req.RoomSubscriptions) > ssMaxLists {
		return req, errInvalidParam("at most %d lists and room subscriptions", ssMaxLists)
	}
	check := func(rc *ssRoomConfig) error {
		if len(rc.RequiredState) > ssMaxRequiredState {
			return errInvalidParam("at most %d required_state entries", ssMaxRequiredState)
		}
		if rc.TimelineLimit < 0 {
			return errInvalidParam("timeline_limit must not be negative")
		}
		rc.TimelineLimit = min(rc.TimelineLimit, ssMaxTimeline)
		return nil
	}
	for name, l := range req.Lists {
		if len(l.Ranges) > ssMaxRanges {
			return req, errInvalidParam("at most %d ranges per list", ssMaxRanges)
		}
		for _, r := range l.Ranges {
			if r[0] < 0 || r[1] < r[0] {
				return req, errInvalidParam("a range is [start, end] with 0 <= start <= end")
			}
		}
		if err := check(&l.ssRoomConfig); err != nil {
			return req, err
		}
		req.Lists[name] = l
	}
	for id, rc := range req.RoomSubscriptions {
		if err := check(&rc); err != nil {
			return req, err
		}
		req.RoomSubscriptions[id] = rc
	}
	return req, nil
}

// ssSent is what a connection sent of a room.
type ssSent struct {
	// pos is the position of the response that carried the room.
	pos int64
	// config is the room's required_state and timeline_limit then, as
	// JSON: a change sends the room again from scratch.
	config string
}

// ssConn is one sliding sync connection.
type ssConn struct {
	mu sync.Mutex // serialises the connection's requests; guards all below
	// sent holds the rooms sent, by room ID.
	sent map[string]ssSent
	// counts are the list counts last sent.
	counts map[string]int
	// meta caches what filters and sorting need.
	meta ssMeta
	// lastUsed is when a request last used the connection.
	lastUsed time.Time
}

type ssConnKey struct{ user, device, conn string }

// ssConns is the connection store.
type ssConns struct {
	mu sync.Mutex // guards m
	m  map[ssConnKey]*ssConn
}

// get returns the connection; with reset a fresh one replaces it. ok is
// false when the connection is unknown and reset is false.
func (cs *ssConns) get(k ssConnKey, reset bool, now time.Time) (*ssConn, bool) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.m == nil {
		cs.m = make(map[ssConnKey]*ssConn)
	}
	c, ok := cs.m[k]
	if ok && !reset {
		c.lastUsed = now
		return c, true
	}
	if !reset {
		return nil, false
	}
	// Sweep stale connections, and this device's excess ones.
	perDevice := 0
	for ok, oc := range cs.m {
		if now.Sub(oc.lastUsed) > ssConnTTL {
			delete(cs.m, ok)
		} else if ok.user == k.user && ok.device == k.device {
			perDevice++
		}
	}
	if perDevice >= ssMaxConnsPerDevice {
		for ok := range cs.m {
			if ok.user == k.user && ok.device == k.device && ok != k {
				delete(cs.m, ok)
				break
			}
		}
	}
	c = &ssConn{sent: map[string]ssSent{}, counts: map[string]int{}, lastUsed: now}
	cs.m[k] = c
	return c, true
}

// slidingSync implements the MSC4186 endpoint.
func (s *Server) slidingSync(c echo.Context) error {
	ctx := c.Request().Context()
	d := device(c)
	body, err := readBody(c)
	if err != nil {
		return err
	}
	req, err := parseSlidingSync(body)
	if err != nil {
		return err
	}
	var since *hsync.Token
	if p := c.QueryParam("pos"); p != "" {
		t, err := hsync.ParseToken(p)
		if err != nil {
			return merr(http.StatusBadRequest, "M_UNKNOWN_POS", "Unknown position")
		}
		since = &t
	}
	timeout, err := parseTimeout(c)
	if err != nil {
		return err
	}
	conn, ok := s.ssConns.get(ssConnKey{d.UserID, d.DeviceID, req.ConnID}, since == nil, s.cfg.Now())
	if !ok {
		return merr(http.StatusBadRequest, "M_UNKNOWN_POS", "Unknown connection; start again without pos")
	}
	s.metrics.syncRequests.Inc()
	if since == nil {
		timeout = 0
	}
	v := viewer{d.UserID, d.DeviceID}
	var resp *ssResponse
	// The same long-poll as /sync (homeserver/sync's LongPoll).
	err = s.syncer.LongPoll(ctx, v.UserID, timeout, func(ctx context.Context, committed int64, ms []storage.RoomMembership) (bool, error) {
		r, empty, err := s.buildSlidingSync(ctx, conn, &req, v, since, committed, ms)
		resp = r
		return empty, err
	})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, resp)
}
