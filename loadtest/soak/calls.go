package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	pionturn "github.com/pion/turn/v5"
)

// httpClients is one client's own connection pool, so the server sees
// each simulated user on its own connections.
type httpClients struct {
	tr *http.Transport
	hc *http.Client
}

func newHTTPClients() *httpClients {
	tr := &http.Transport{MaxIdleConnsPerHost: 4, IdleConnTimeout: 30 * time.Second}
	return &httpClients{tr: tr, hc: &http.Client{Transport: tr, Timeout: 60 * time.Second}}
}

func (h *httpClients) close() { h.tr.CloseIdleConnections() }

// callUser is a user of the 1:1 call part: its /sync hands m.call.* events
// to whoever waits for them.
type callUser struct {
	cli *client
	// turnAddr is its server's TURN UDP listener.
	turnAddr string
	events   chan callEvent
}

func (u *callUser) onSync(r *syncResponse) {
	for _, j := range r.Rooms.Join {
		for _, ev := range j.Timeline.Events {
			if !strings.HasPrefix(ev.Type, "m.call.") || ev.Sender == u.cli.User {
				continue
			}
			ce := callEvent{Type: ev.Type, Sender: ev.Sender}
			if err := jsonUnmarshal(ev.Content, &ce.Content); err != nil {
				continue
			}
			select {
			case u.events <- ce:
			default: // nobody is waiting: a stale event of an earlier call
			}
		}
	}
}

// await waits for an m.call.* event of callID.
func (u *callUser) await(ctx context.Context, typ, callID string) (callEvent, error) {
	for {
		select {
		case <-ctx.Done():
			return callEvent{}, fmt.Errorf("%w: waiting for %s of %s: %w", ErrCall, typ, callID, ctx.Err())
		case ev := <-u.events:
			if ev.Type == typ && ev.str("call_id") == callID {
				return ev, nil
			}
		}
	}
}

// relay is one TURN allocation of a call party, relaying real UDP.
type relay struct {
	conn  net.PacketConn
	cl    *pionturn.Client
	relay net.PacketConn
}

// allocate gets credentials from /voip/turnServer (spec: "TURN server")
// and allocates a UDP relay (RFC 8656 section 7) with pion's client.
func allocate(ctx context.Context, u *callUser) (*relay, error) {
	creds, err := u.cli.turnServer(ctx)
	if err != nil {
		return nil, err
	}
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	cl, err := pionturn.NewClient(&pionturn.ClientConfig{
		STUNServerAddr: u.turnAddr, TURNServerAddr: u.turnAddr,
		Username: creds.Username, Password: creds.Password,
		Conn: conn, RTO: 200 * time.Millisecond,
	})
	if err != nil {
		conn.Close()
		return nil, err
	}
	if err := cl.Listen(); err != nil {
		cl.Close()
		conn.Close()
		return nil, err
	}
	rc, err := cl.AllocateWithContext(ctx)
	if err != nil {
		cl.Close()
		conn.Close()
		return nil, fmt.Errorf("%w: TURN allocate: %w", ErrCall, err)
	}
	return &relay{conn: conn, cl: cl, relay: rc}, nil
}

// close deallocates (a Refresh with lifetime 0, RFC 8656 section 7.2) and
// closes the sockets.
func (r *relay) close() {
	r.relay.Close()
	r.cl.Close()
	r.conn.Close()
}

// payload is an Opus-sized packet.
var payload = make([]byte, 160)

// exchange sends n packets from a to b's relayed address through both
// relays and counts what b receives, within ctx.
func exchange(ctx context.Context, a, b *relay, n int) int {
	var got atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 1500)
		for got.Load() < int64(n) {
			dl, _ := ctx.Deadline()
			_ = b.relay.SetReadDeadline(dl)
			n, _, err := b.relay.ReadFrom(buf)
			if err != nil {
				return
			}
			if n == len(payload) { // not the other side's "hello"
				got.Add(1)
			}
		}
	}()
	// The first write installs the permission (RFC 8656 section 9); the
	// peer's allocation must permit us too, so both sides write first.
	_, _ = b.relay.WriteTo([]byte("hello"), a.relay.LocalAddr())
	tick := time.NewTicker(5 * time.Millisecond)
	for i := 0; i < n && ctx.Err() == nil; i++ {
		<-tick.C
		_, _ = a.relay.WriteTo(payload, b.relay.LocalAddr())
	}
	tick.Stop()
	wg.Wait()
	return int(got.Load())
}

// callStats count the 1:1 calls.
type callStats struct {
	placed, completed, vanished atomic.Int64
	packetsSent, packetsGot     atomic.Int64
}

// oneToOne places a call from caller to callee in room (spec: "Voice over
// IP", m.call.invite / candidates / answer / hangup as room events), both
// relayed through TURN, sends audio-sized UDP both ways, then hangs up,
// or, when vanish is set, the caller disappears without a hangup.
func oneToOne(parent context.Context, caller, callee *callUser, room string, vanish bool, st *callStats, cnt *counters) error {
	// Failures count against the run's context: one that ends because
	// this call timed out is an error, one cut by the end of the load is
	// not.
	ctx, cancel := context.WithTimeout(parent, 30*time.Second)
	defer cancel()
	st.placed.Add(1)
	callID := fmt.Sprintf("soakcall%d", time.Now().UnixNano())
	send := func(u *callUser, typ string, content map[string]any) error {
		content["call_id"], content["party_id"], content["version"] = callID, u.cli.User, "1"
		cnt.requests.Add(1)
		_, err := u.cli.sendEvent(ctx, room, typ, callID+typ+u.cli.User, content)
		cnt.fail(parent, typ, err)
		return err
	}
	ra, err := allocate(ctx, caller)
	if err != nil {
		cnt.fail(parent, "turn", err)
		return err
	}
	defer ra.close()
	if err := send(caller, "m.call.invite", map[string]any{"lifetime": 30000,
		"offer": map[string]string{"type": "offer", "sdp": fakeSDP("offer")}}); err != nil {
		return err
	}
	if err := send(caller, "m.call.candidates", map[string]any{"candidates": []any{candidate(ra.relay.LocalAddr())}}); err != nil {
		return err
	}
	if _, err := callee.await(ctx, "m.call.invite", callID); err != nil {
		cnt.fail(parent, "invite delivery", err)
		return err
	}
	rb, err := allocate(ctx, callee)
	if err != nil {
		cnt.fail(parent, "turn", err)
		return err
	}
	defer rb.close()
	if err := send(callee, "m.call.answer", map[string]any{
		"answer": map[string]string{"type": "answer", "sdp": fakeSDP("answer")}}); err != nil {
		return err
	}
	if err := send(callee, "m.call.candidates", map[string]any{"candidates": []any{candidate(rb.relay.LocalAddr())}}); err != nil {
		return err
	}
	if _, err := caller.await(ctx, "m.call.answer", callID); err != nil {
		cnt.fail(parent, "answer delivery", err)
		return err
	}
	const n = 100
	ectx, ecancel := context.WithTimeout(ctx, 10*time.Second)
	got := exchange(ectx, ra, rb, n) + exchange(ectx, rb, ra, n)
	ecancel()
	st.packetsSent.Add(2 * n)
	st.packetsGot.Add(int64(got))
	if got < n { // loopback loses nothing unless the relay does
		err := fmt.Errorf("%w: %d of %d relayed packets arrived", ErrCall, got, 2*n)
		cnt.fail(parent, "turn relay", err)
		return err
	}
	if vanish {
		st.vanished.Add(1)
		return nil
	}
	if err := send(caller, "m.call.hangup", map[string]any{"reason": "user_hangup"}); err != nil {
		return err
	}
	if _, err := callee.await(ctx, "m.call.hangup", callID); err != nil {
		cnt.fail(parent, "hangup delivery", err)
		return err
	}
	st.completed.Add(1)
	return nil
}

// candidate is an m.call.candidates entry for a relayed address.
func candidate(a net.Addr) map[string]any {
	ua, _ := a.(*net.UDPAddr)
	if ua == nil {
		return map[string]any{"candidate": "", "sdpMid": "0", "sdpMLineIndex": 0}
	}
	return map[string]any{
		"candidate":     fmt.Sprintf("candidate:1 1 udp 16777215 %s %d typ relay raddr 0.0.0.0 rport 0", ua.IP, ua.Port),
		"sdpMid":        "0",
		"sdpMLineIndex": 0,
	}
}

// fakeSDP is a syntactically plausible audio-only session description;
// the homeserver carries it as opaque content.
func fakeSDP(kind string) string {
	return "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=soak " + kind + "\r\nt=0 0\r\n" +
		"m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=rtpmap:111 opus/48000/2\r\n"
}
