package federation

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/switchboard-chat/switchboard/homeserver/rooms"
	"github.com/switchboard-chat/switchboard/homeserver/storage"
)

// Transaction limits (spec: Server-Server API, "Transactions": at most 50
// PDUs and 100 EDUs).
const (
	maxTxnPDUs = 50
	maxTxnEDUs = 100
	// scanBatch is how many events one queue scan reads.
	scanBatch = 500
	// sendTimeout bounds one outbound transaction.
	sendTimeout = 60 * time.Second
)

// outQueue is the durable outbound queue. A scanner follows the event
// stream from a cursor stored in the database and queues every local
// event of a room with remote members for each remote server, moving the
// cursor in the same write; one sender per destination sends what is
// queued as transactions, deletes what the peer acknowledged, and backs
// off exponentially while the peer is unreachable. Everything lives in
// the database, so a restart resumes where it stopped.
type outQueue struct {
	f    *Service
	kick chan struct{}
	stop chan struct{}
	wg   sync.WaitGroup
	// ctx ends at close, cutting in-flight requests short.
	ctx    context.Context
	cancel context.CancelFunc
	// cursor caches the stored scan cursor (-1: not loaded); only the
	// scanner goroutine uses it.
	cursor int64

	mu sync.Mutex // guards dests and stopped
	// dests holds one sender per destination with work.
	dests   map[string]*destSender
	stopped bool
}

type destSender struct {
	name string
	wake chan struct{}
	// alive is set by peerAlive: the peer called us, retry now.
	alive atomic.Bool
}

func newOutQueue(f *Service) *outQueue {
	ctx, cancel := context.WithCancel(context.Background())
	return &outQueue{f: f, kick: make(chan struct{}, 1), stop: make(chan struct{}), dests: make(map[string]*destSender), ctx: ctx, cancel: cancel, cursor: -1}
}

// start runs the scanner and a sender for every destination with queued
// items (left from before a restart).
func (q *outQueue) start(ctx context.Context) error {
	dests, err := q.f.db.QueuedDestinations(ctx)
	if err != nil {
		return err
	}
	if _, err := q.f.db.FederationCursor(ctx); err != nil {
		return err
	}
	q.wg.Add(1)
	go q.scanLoop()
	for _, d := range dests {
		q.wakeDest(d)
	}
	q.kickScan()
	return nil
}

// close stops the scanner and the senders and waits for them.
func (q *outQueue) close() {
	q.mu.Lock()
	if q.stopped {
		q.mu.Unlock()
		return
	}
	q.stopped = true
	close(q.stop)
	q.cancel()
	q.mu.Unlock()
	q.wg.Wait()
}

// kickScan asks the scanner to look for new events.
func (q *outQueue) kickScan() {
	select {
	case q.kick <- struct{}{}:
	default:
	}
}

// wakeDest makes destination's sender try now, starting it if needed.
func (q *outQueue) wakeDest(dest string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.stopped {
		return
	}
	d, ok := q.dests[dest]
	if !ok {
		d = &destSender{name: dest, wake: make(chan struct{}, 1)}
		q.dests[dest] = d
		q.wg.Add(1)
		go q.sendLoop(d)
	}
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

func (q *outQueue) scanLoop() {
	defer q.wg.Done()
	// A slow tick covers a kick lost to an error.
	tick := q.f.clock.NewTicker(30 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-q.stop:
			return
		case <-q.kick:
		case <-tick.C():
		}
		for {
			more, err := q.scanOnce()
			if err != nil {
				if q.ctx.Err() == nil { // not closing
					q.f.log.Warn("federation queue scan failed", "err", err)
				}
				break
			}
			if !more {
				break
			}
		}
	}
}

// scanOnce queues the local events after the cursor; more reports a full
// batch (call again).
func (q *outQueue) scanOnce() (more bool, err error) {
	ctx, cancel := context.WithTimeout(q.ctx, 30*time.Second)
	defer cancel()
	db := q.f.db
	if q.cursor < 0 {
		c, err := db.FederationCursor(ctx)
		if err != nil {
			return false, err
		}
		q.cursor = c
	}
	evs, err := db.EventsAfter(ctx, q.cursor, scanBatch)
	if err != nil || len(evs) == 0 {
		return false, err
	}
	type item struct {
		dests []string
		js    []byte
	}
	var items []item
	woken := map[string]bool{}
	for _, e := range evs {
		if !q.f.isLocalUser(e.Sender) {
			continue
		}
		dests, err := q.f.destinationsFor(ctx, e)
		if err != nil {
			return false, err
		}
		if len(dests) == 0 {
			continue
		}
		items = append(items, item{dests, e.JSON})
		for _, d := range dests {
			woken[d] = true
		}
	}
	last := evs[len(evs)-1].Pos
	now := q.f.nowMS()
	err = db.WriteTx(ctx, func(tx *storage.Tx) error {
		for _, it := range items {
			if err := tx.Enqueue(ctx, it.dests, storage.QueuePDU, it.js, now); err != nil {
				return err
			}
		}
		return tx.SetFederationCursor(ctx, last)
	})
	if err != nil {
		return false, err
	}
	q.cursor = last
	for d := range woken {
		q.wakeDest(d)
	}
	return len(evs) == scanBatch, nil
}

// enqueueEDUs queues EDUs for their destinations and wakes the senders.
func (q *outQueue) enqueueEDUs(ctx context.Context, byDest map[string][][]byte) error {
	if len(byDest) == 0 {
		return nil
	}
	now := q.f.nowMS()
	err := q.f.db.WriteTx(ctx, func(tx *storage.Tx) error {
		for d, edus := range byDest {
			for _, js := range edus {
				if err := tx.Enqueue(ctx, []string{d}, storage.QueueEDU, js, now); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for d := range byDest {
		q.wakeDest(d)
	}
	return nil
}

// enqueuePDU queues one PDU for destinations (events that the scanner
// does not see as local, e.g. a remote join we relay as resident server).
func (q *outQueue) enqueuePDU(ctx context.Context, dests []string, js []byte) error {
	if len(dests) == 0 {
		return nil
	}
	err := q.f.db.WriteTx(ctx, func(tx *storage.Tx) error {
		return tx.Enqueue(ctx, dests, storage.QueuePDU, js, q.f.nowMS())
	})
	if err != nil {
		return err
	}
	for _, d := range dests {
		q.wakeDest(d)
	}
	return nil
}

// sendLoop delivers destination's queue, one transaction at a time.
func (q *outQueue) sendLoop(d *destSender) {
	defer q.wg.Done()
	// At most one sender per destination in a cluster: wait for the
	// destination's lease (at once on one node) before sending.
	release, lerr := q.f.lease.Acquire(q.ctx, d.name)
	if lerr != nil {
		if q.ctx.Err() == nil {
			q.f.log.Warn("federation sender lease not acquired", "destination", d.name, "err", lerr)
		}
		q.senderGone(d)
		return
	}
	defer release()
	// The backoff lives in memory and is written through to the database
	// (where a restart finds it); only this goroutine changes it.
	ctx, cancel := context.WithTimeout(q.ctx, 30*time.Second)
	bo, err := q.f.db.DestinationBackoff(ctx, d.name)
	cancel()
	if err != nil && q.ctx.Err() == nil {
		q.f.log.Warn("federation backoff read failed", "destination", d.name, "err", err)
	}
	reset := func() {
		if bo.Failures == 0 && bo.RetryAt == 0 {
			return
		}
		bo = storage.Backoff{}
		if err := q.setBackoff(d.name, bo); err != nil {
			q.f.log.Warn("federation backoff write failed", "destination", d.name, "err", err)
		}
	}
	for {
		if d.alive.Swap(false) {
			reset()
		}
		if wait := time.Duration(bo.RetryAt-q.f.nowMS()) * time.Millisecond; wait > 0 {
			t := q.f.clock.NewTimer(wait)
			select {
			case <-q.stop:
				t.Stop()
				return
			case <-d.wake:
				t.Stop()
				continue // peerAlive may have ended the backoff
			case <-t.C():
			}
		}
		sent, err := q.sendOnce(d.name)
		if q.ctx.Err() != nil {
			return // closing: not the peer's fault
		}
		if err != nil {
			bo.Failures++
			delay := q.f.opts.RetryMin << min(bo.Failures-1, 20)
			delay = min(delay, q.f.opts.RetryMax)
			bo.RetryAt = q.f.nowMS() + delay.Milliseconds()
			q.f.log.Info("federation transaction failed; backing off", "destination", d.name, "failures", bo.Failures, "retry_in", delay, "err", err)
			if err := q.setBackoff(d.name, bo); err != nil {
				q.f.log.Warn("federation backoff write failed", "destination", d.name, "err", err)
			}
			continue
		}
		reset()
		if sent > 0 {
			continue
		}
		select {
		case <-q.stop:
			return
		case <-d.wake:
		}
	}
}

// senderGone forgets d (its sender goroutine ends without sending), so
// that the next wake-up starts a new one.
func (q *outQueue) senderGone(d *destSender) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.dests[d.name] == d {
		delete(q.dests, d.name)
	}
}

func (q *outQueue) setBackoff(dest string, bo storage.Backoff) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return q.f.db.SetDestinationBackoff(ctx, dest, bo)
}

// peerAlive ends dest's backoff and wakes its sender if it has one. It is
// called for every authenticated inbound request, so it touches no
// database.
func (q *outQueue) peerAlive(dest string) {
	q.mu.Lock()
	d, ok := q.dests[dest]
	q.mu.Unlock()
	if !ok {
		return
	}
	d.alive.Store(true)
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// sendOnce sends one transaction of queued items and deletes them once
// the peer answered 200; it returns how many items went out.
func (q *outQueue) sendOnce(dest string) (int, error) {
	ctx, cancel := context.WithTimeout(q.ctx, sendTimeout)
	defer cancel()
	items, err := q.f.db.QueueBatch(ctx, dest, maxTxnPDUs, maxTxnEDUs)
	if err != nil || len(items) == 0 {
		return 0, err
	}
	txn := gomatrixserverlib.Transaction{
		Origin:         q.f.origin(),
		Destination:    spec.ServerName(dest),
		OriginServerTS: spec.AsTimestamp(q.f.clock.Now()),
		PDUs:           []json.RawMessage{},
		EDUs:           []gomatrixserverlib.EDU{},
	}
	ids := make([]int64, 0, len(items))
	minID, maxID := items[0].ID, items[0].ID
	for _, it := range items {
		ids = append(ids, it.ID)
		minID, maxID = min(minID, it.ID), max(maxID, it.ID)
		switch it.Kind {
		case storage.QueuePDU:
			txn.PDUs = append(txn.PDUs, it.JSON)
		case storage.QueueEDU:
			var edu gomatrixserverlib.EDU
			if err := json.Unmarshal(it.JSON, &edu); err != nil {
				continue // cannot happen: we wrote it
			}
			txn.EDUs = append(txn.EDUs, edu)
		}
	}
	// The ID is stable across retries of the same batch, so the peer can
	// drop a duplicate (spec: "Transactions" are idempotent by txnId).
	txn.TransactionID = gomatrixserverlib.TransactionID(fmt.Sprintf("%d-%d-%d", minID, maxID, len(items)))
	resp, err := q.f.client.SendTransaction(ctx, txn)
	if err != nil {
		return 0, err
	}
	for id, r := range resp.PDUs {
		if r.Error != "" {
			q.f.log.Info("peer refused a PDU", "destination", dest, "event_id", id, "err", r.Error)
		}
	}
	if err := q.f.db.AckQueue(ctx, ids); err != nil {
		return 0, err
	}
	return len(items), nil
}

// isLocalUser reports whether userID belongs to this server.
func (f *Service) isLocalUser(userID string) bool {
	_, server, ok := splitUserID(userID)
	return ok && server == f.serverName
}

// destinationsFor lists the remote servers an event goes to: those of
// the room's joined members, plus the target of a membership event (an
// invited, kicked or banned remote user's server hears of it).
func (f *Service) destinationsFor(ctx context.Context, e storage.Event) ([]string, error) {
	members, err := f.db.JoinedMembers(ctx, e.RoomID)
	if err != nil {
		return nil, err
	}
	set := map[string]bool{}
	for _, m := range members {
		set[rooms.ServerOf(m)] = true
	}
	// The target of a membership change hears of it; an invite reached the
	// invitee's server already through /invite.
	if e.Type == spec.MRoomMember && e.StateKey != nil && strings.HasPrefix(*e.StateKey, "@") && membershipOfEvent(e) != "invite" {
		set[rooms.ServerOf(*e.StateKey)] = true
	}
	delete(set, f.serverName)
	delete(set, "")
	out := make([]string, 0, len(set))
	for s := range set {
		out = append(out, s)
	}
	return out, nil
}
