package homeserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/switchboard-chat/switchboard/homeserver/rooms"
	"github.com/switchboard-chat/switchboard/homeserver/storage"
)

// MSC4140 ("Delayed events"), as Element Call uses it: a client schedules
// an event (typically the empty call.member that means "I left") with
// ?org.matrix.msc4140.delay=<ms> on PUT send or PUT state, keeps pushing
// it back with "restart" while it is alive, and "send"s or "cancel"s it
// when it leaves. If the client dies, the server sends the event when the
// delay runs out, so the client's call membership ends within seconds.
//
// Delayed events live in the database (storage/delayed.go): a restart of
// the server keeps them, and one that came due while the server was down
// is sent at start.

const (
	delayParam       = "org.matrix.msc4140.delay"
	parentDelayParam = "org.matrix.msc4140.parent_delay_id"
	delayedPrefix    = "/_matrix/client/unstable/org.matrix.msc4140/delayed_events"
	// delayedMaxWait bounds the scheduler's sleep, so that a clock that
	// jumps (or a missed wake-up) delays a due event by at most this.
	delayedMaxWait = 5 * time.Second
	// delayedBatch is how many due events one pass sends.
	delayedBatch = 100
)

// delayedRoutes registers the MSC4140 endpoints.
func (s *Server) delayedRoutes(e *echo.Echo) {
	auth := s.requireAuth
	e.GET(delayedPrefix, s.listDelayed, auth)
	e.GET(delayedPrefix+"/:delayId", s.getDelayed, auth)
	// The first version of the MSC took the action in the body, behind
	// authentication; the current one takes it in the path and needs no
	// token (the delay ID is the secret). Both accept either.
	e.POST(delayedPrefix+"/:delayId", s.optionalAuth(s.updateDelayed))
	e.POST(delayedPrefix+"/:delayId/:action", s.optionalAuth(s.updateDelayed))
}

// optionalAuth authenticates a request that carries an access token and
// lets one without through, unauthenticated.
func (s *Server) optionalAuth(h echo.HandlerFunc) echo.HandlerFunc {
	authed := s.requireAuth(h)
	return func(c echo.Context) error {
		if c.Request().Header.Get("Authorization") != "" || c.QueryParam("access_token") != "" {
			return authed(c)
		}
		return h(c)
	}
}

// delayQuery reads ?org.matrix.msc4140.delay; delayed is false without it.
func (s *Server) delayQuery(c echo.Context) (delay time.Duration, delayed bool, err error) {
	q := c.QueryParams()
	if q.Has(parentDelayParam) {
		// An earlier draft of the MSC chained delayed events; no client
		// in use sends it.
		return 0, false, errInvalidParam("%s is not supported", parentDelayParam)
	}
	if !q.Has(delayParam) {
		return 0, false, nil
	}
	ms, perr := strconv.ParseInt(q.Get(delayParam), 10, 64)
	if perr != nil || ms < 0 {
		return 0, false, errInvalidParam("%s must be a non-negative integer of milliseconds", delayParam)
	}
	if max := s.cfg.RTC.MaxDelay; ms > max.Milliseconds() {
		// The MSC's own code travels beside M_UNKNOWN while the MSC is
		// unstable (matrix-js-sdk reads it there).
		e := merr(http.StatusBadRequest, "M_UNKNOWN", "The requested delay exceeds the allowed maximum of %d ms", max.Milliseconds())
		e.Extra = map[string]any{"org.matrix.msc4140.errcode": "M_MAX_DELAY_EXCEEDED", "org.matrix.msc4140.max_delay": max.Milliseconds()}
		return 0, false, e
	}
	return time.Duration(ms) * time.Millisecond, true, nil
}

// scheduleDelayed stores a delayed event for the authenticated device and
// answers {delay_id}. What can be checked now is checked now (the sender
// is joined, the content is canonical, a call-member key is the
// sender's); the auth rules run again when the event is sent.
// txnID is the client transaction of PUT send ("" for state): a retry
// gets the delay ID of the first request while it is scheduled (spec:
// "Transaction identifiers").
func (s *Server) scheduleDelayed(c echo.Context, evType string, stateKey *string, txnID string, delay time.Duration, stickyMS int64) error {
	ctx := c.Request().Context()
	d := device(c)
	if err := s.sendLimit.allow(d.UserID); err != nil {
		return err
	}
	if evType == spec.MRoomRedaction {
		// A redaction is checked against its target when it is sent
		// (rooms/redact.go); the target may be gone or changed by the
		// time a delayed one would be sent.
		return errInvalidParam("redactions cannot be delayed")
	}
	content, err := readContent(c)
	if err != nil {
		return err
	}
	if len(content) > rooms.MaxEventBytes {
		return errTooLarge("content is larger than %d bytes", rooms.MaxEventBytes)
	}
	roomID := param(c, "roomId")
	if err := s.requireJoined(c, roomID, d.UserID); err != nil {
		return err
	}
	if stateKey != nil {
		if err := s.checkCallMemberKey(ctx, roomID, d.UserID, evType, *stateKey); err != nil {
			return err
		}
	}
	now := s.nowMS()
	de := storage.DelayedEvent{
		DelayID: "syd_" + randomString(18), UserID: d.UserID, DeviceID: d.DeviceID,
		RoomID: roomID, Type: evType, StateKey: stateKey, Content: content,
		DelayMS: delay.Milliseconds(), RunningSince: now, SendAt: now + delay.Milliseconds(), StickyMS: stickyMS, TxnID: txnID,
	}
	limit := s.cfg.RTC.MaxDelayedPerUser
	err = s.db.WriteTx(ctx, func(tx *storage.Tx) error {
		if txnID != "" {
			id, err := tx.DelayedByTxn(ctx, d.UserID, d.DeviceID, txnID)
			if err != nil {
				return err
			}
			if id != "" {
				de.DelayID = id // a retry: answer as the first time
				return nil
			}
		}
		n, err := tx.CountDelayedEvents(ctx, d.UserID)
		if err != nil {
			return err
		}
		if n >= limit {
			return merr(http.StatusBadRequest, "M_LIMIT_EXCEEDED", "at most %d delayed events may be scheduled at once", limit)
		}
		return tx.AddDelayedEvent(ctx, de)
	})
	if err != nil {
		return err
	}
	s.delayed.poke()
	return c.JSON(http.StatusOK, map[string]string{"delay_id": de.DelayID})
}

// delayedJSON is a scheduled delayed event as GET delayed_events shows it.
func delayedJSON(d storage.DelayedEvent) map[string]any {
	m := map[string]any{
		"delay_id":      d.DelayID,
		"room_id":       d.RoomID,
		"type":          d.Type,
		"delay":         d.DelayMS,
		"running_since": d.RunningSince,
		"content":       d.Content,
	}
	if d.StateKey != nil {
		m["state_key"] = *d.StateKey
	}
	return m
}

// listDelayed implements GET …/org.matrix.msc4140/delayed_events: the
// caller's scheduled delayed events. The list is answered under
// "scheduled" (the MSC's current shape) and "delayed_events" (its first).
// Finalised events are not kept, so "finalised" is always empty.
func (s *Server) listDelayed(c echo.Context) error {
	ds, err := s.db.DelayedEvents(c.Request().Context(), device(c).UserID)
	if err != nil {
		return err
	}
	ids := map[string]bool{}
	for _, id := range c.QueryParams()["delay_id"] {
		ids[id] = true
	}
	wantScheduled := true
	if st := c.QueryParams()["status"]; len(st) > 0 {
		wantScheduled = false
		for _, v := range st {
			switch v {
			case "scheduled":
				wantScheduled = true
			case "finalised":
			default:
				return errInvalidParam("status must be scheduled or finalised")
			}
		}
	}
	list := []map[string]any{}
	for _, d := range ds {
		if wantScheduled && (len(ids) == 0 || ids[d.DelayID]) {
			list = append(list, delayedJSON(d))
		}
	}
	return c.JSON(http.StatusOK, map[string]any{"scheduled": list, "delayed_events": list, "finalised": []any{}})
}

// getDelayed implements GET …/delayed_events/{delayId} for the owner.
func (s *Server) getDelayed(c echo.Context) error {
	d, err := s.db.DelayedEvent(c.Request().Context(), param(c, "delayId"))
	if errors.Is(err, storage.ErrNotFound) || (err == nil && d.UserID != device(c).UserID) {
		return errNotFound("No such delayed event")
	}
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, delayedJSON(d))
}

// updateDelayed implements POST …/delayed_events/{delayId}/{action} and
// the older POST …/delayed_events/{delayId} with {"action": …}: restart
// the countdown, cancel, or send now. An authenticated caller must own
// the delayed event; an unknown or foreign delay ID is M_NOT_FOUND.
func (s *Server) updateDelayed(c echo.Context) error {
	ctx := c.Request().Context()
	action := param(c, "action")
	if action == "" {
		var body struct {
			Action *string `json:"action"`
		}
		if err := readJSON(c, &body); err != nil {
			return err
		}
		if body.Action == nil {
			return errMissingParam("'action' is missing")
		}
		action = *body.Action
	}
	switch action {
	case "restart", "cancel", "send":
	default:
		if param(c, "action") != "" {
			return merr(http.StatusNotFound, "M_UNRECOGNIZED", "Unrecognized request")
		}
		return errInvalidParam("'action' must be one of 'cancel', 'restart', 'send'")
	}
	who := "ip:" + c.RealIP()
	if d := device(c); d.UserID != "" {
		who = d.UserID
	}
	if err := s.sendLimit.allow(who); err != nil {
		return err
	}
	delayID := param(c, "delayId")
	d, err := s.db.DelayedEvent(ctx, delayID)
	if errors.Is(err, storage.ErrNotFound) || (err == nil && device(c).UserID != "" && d.UserID != device(c).UserID) {
		return errNotFound("No such delayed event")
	}
	if err != nil {
		return err
	}
	switch action {
	case "restart":
		err = s.db.WriteTx(ctx, func(tx *storage.Tx) error { return tx.RestartDelayedEvent(ctx, delayID, s.nowMS()) })
		s.delayed.poke()
	case "cancel":
		err = s.db.WriteTx(ctx, func(tx *storage.Tx) error { _, err := tx.TakeDelayedEvent(ctx, delayID); return err })
	case "send":
		_, err = s.sendDelayed(ctx, delayID)
	}
	if errors.Is(err, storage.ErrNotFound) {
		return errNotFound("No such delayed event")
	}
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, struct{}{})
}

// sendDelayed takes a delayed event and sends it as its owner, in one
// write: it is sent at most once whoever else (timer, client) tries. An
// event the room refuses by then (the owner left, lost power) is dropped
// and its error returned.
func (s *Server) sendDelayed(ctx context.Context, delayID string) (string, error) {
	var eventID string
	err := s.db.WriteTx(ctx, func(tx *storage.Tx) error {
		d, err := tx.TakeDelayedEvent(ctx, delayID)
		if err != nil {
			return err
		}
		w, err := s.rooms.Open(ctx, tx, d.RoomID)
		if err != nil {
			return err
		}
		ev, err := w.Append(ctx, rooms.Event{Sender: d.UserID, Type: d.Type, StateKey: d.StateKey, Content: d.Content, StickyMS: d.StickyMS})
		if err != nil {
			return err
		}
		eventID = ev.EventID
		return nil
	})
	if _, refused := asMatrixError(err); refused {
		// Refused: the write rolled back, so drop the delayed event alone.
		s.log.Info("delayed event refused", "delay_id", delayID, "err", err)
		if derr := s.db.WriteTx(ctx, func(tx *storage.Tx) error { _, err := tx.TakeDelayedEvent(ctx, delayID); return err }); derr != nil && !errors.Is(derr, storage.ErrNotFound) {
			return "", derr
		}
	}
	return eventID, err
}

// delayedScheduler sends delayed events when they come due. It sleeps
// until the earliest is due (at most delayedMaxWait) or until poked by a
// schedule or restart; the clock is the server's (Config.Now), so tests
// move time and poke.
type delayedScheduler struct {
	s    *Server
	wake chan struct{}
	done chan struct{}
	wg   sync.WaitGroup
	// lastSweep is when (Unix ms) expired sticky-event records were last
	// deleted.
	lastSweep atomic.Int64
}

func newDelayedScheduler(s *Server) *delayedScheduler {
	return &delayedScheduler{s: s, wake: make(chan struct{}, 1), done: make(chan struct{})}
}

func (d *delayedScheduler) start() {
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		d.run()
	}()
}

// stop ends the scheduler and waits for it. Safe to call twice.
func (d *delayedScheduler) stop() {
	select {
	case <-d.done:
	default:
		close(d.done)
	}
	d.wg.Wait()
}

// poke makes the scheduler look at the table again.
func (d *delayedScheduler) poke() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

func (d *delayedScheduler) run() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-d.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	for {
		wait := d.pass(ctx)
		t := d.s.cfg.Clock.NewTimer(wait)
		select {
		case <-d.done:
			t.Stop()
			return
		case <-d.wake:
		case <-t.C():
		}
		t.Stop()
	}
}

// pass sends every due delayed event and returns how long to sleep.
func (d *delayedScheduler) pass(ctx context.Context) time.Duration {
	s := d.s
	for {
		due, err := s.db.DueDelayedEvents(ctx, s.nowMS(), delayedBatch)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("delayed events", "err", err)
			}
			return delayedMaxWait
		}
		for _, de := range due {
			if _, err := s.sendDelayed(ctx, de.DelayID); err != nil && !errors.Is(err, storage.ErrNotFound) {
				if _, refused := asMatrixError(err); !refused && ctx.Err() == nil {
					// A database failure: keep the event and try later.
					s.log.Warn("sending delayed event", "delay_id", de.DelayID, "err", err)
					return delayedMaxWait
				}
			}
		}
		if len(due) < delayedBatch {
			break
		}
	}
	d.sweepSticky(ctx)
	next, ok, err := s.db.NextDelayedSendAt(ctx)
	if err != nil || !ok {
		return delayedMaxWait
	}
	return min(max(time.Duration(next-s.nowMS())*time.Millisecond, 0), delayedMaxWait)
}

// rtcAfterStore is what MatrixRTC adds to storing an event, local or
// federated, inside the write that stores it: a state event that became
// current cancels other users' delayed events for the same state (MSC4140:
// a delayed state event is cancelled when someone else changes that
// state first; the owner's own sends leave it, as Element Call sends its
// membership after scheduling the leave that empties it), and a sticky
// event is recorded for /sync (MSC4354).
func (s *Server) rtcAfterStore(ctx context.Context, tx *storage.Tx, ev storage.Event, current bool) error {
	if ev.StateKey != nil && current {
		if _, err := tx.CancelDelayedStateEvents(ctx, ev.RoomID, ev.Type, *ev.StateKey, ev.Sender); err != nil {
			return err
		}
	}
	if !bytes.Contains(ev.JSON, []byte(`"`+stickyKey+`"`)) {
		return nil // the common case, without parsing the event
	}
	var f struct {
		Sticky *stickyInfo `json:"msc4354_sticky"`
	}
	if json.Unmarshal(ev.JSON, &f) != nil || f.Sticky == nil || f.Sticky.DurationMS <= 0 {
		return nil
	}
	expires := min(ev.OriginTS, ev.ReceivedTS) + min(f.Sticky.DurationMS, maxStickyMS)
	if expires <= s.nowMS() {
		return nil
	}
	return tx.AddStickyEvent(ctx, ev.EventID, ev.RoomID, ev.Pos, expires)
}

// stickySweepEvery is how often expired sticky-event records are deleted.
const stickySweepEvery = time.Minute

// sweepSticky deletes the records of expired sticky events, at most once
// a stickySweepEvery (they are filtered out when read anyway).
func (d *delayedScheduler) sweepSticky(ctx context.Context) {
	now := d.s.nowMS()
	last := d.lastSweep.Load()
	if now-last < stickySweepEvery.Milliseconds() || !d.lastSweep.CompareAndSwap(last, now) {
		return
	}
	// Read first: an idle server makes no write (and no fsync) for it.
	if has, err := d.s.db.HasExpiredSticky(ctx, now); err != nil || !has {
		return
	}
	if err := d.s.db.WriteTx(ctx, func(tx *storage.Tx) error { return tx.ForgetExpiredSticky(ctx, now) }); err != nil && ctx.Err() == nil {
		d.s.log.Warn("forgetting expired sticky events", "err", err)
	}
}
