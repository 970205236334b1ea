package turn

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	pionturn "github.com/pion/turn/v5"

	"github.com/switchboard-chat/switchboard/internal/testkit"
)

func restCreds(user string) (string, string) {
	return RESTCredentials(testSecret, user, 30*time.Minute, time.Now())
}

// TestPionClientRelay drives the relay with pion/turn's own client: allocate,
// permission, data both ways (pion starts with Send indications and moves to
// ChannelData once its channel is bound), and deallocation on Close.
func TestPionClientRelay(t *testing.T) {
	checkLeaks(t)
	h := startHarness(t, nil)
	peer := listenUDPPeer(t, "127.0.0.1:0")

	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	user, pass := restCreds("@alice:switchboard.test")
	client, err := pionturn.NewClient(&pionturn.ClientConfig{
		STUNServerAddr: h.udpAddr.String(),
		TURNServerAddr: h.udpAddr.String(),
		Username:       user,
		Password:       pass,
		Realm:          testRealm,
		Conn:           conn,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := client.Listen(); err != nil {
		t.Fatal(err)
	}
	relayConn, err := client.Allocate()
	if err != nil {
		t.Fatalf("allocate: %v", err)
	}
	if got := h.metric("switchboard_turn_allocations"); got != 1 {
		t.Fatalf("allocations gauge = %v, want 1", got)
	}
	relayed := relayConn.LocalAddr().(*net.UDPAddr)
	if !relayed.IP.Equal(net.IPv4(127, 0, 0, 1)) {
		t.Fatalf("relayed address %v does not carry the configured relay IP", relayed)
	}

	// Client to peer, then peer to client, many times: the first packets go
	// as Send indications, later ones as ChannelData.
	readDone := make(chan error, 1)
	const rounds = 40
	go func() {
		buf := make([]byte, 1500)
		for i := 0; i < rounds; i++ {
			_ = relayConn.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, from, err := relayConn.ReadFrom(buf)
			if err != nil {
				readDone <- err
				return
			}
			if want := fmt.Sprintf("pong %d", i); string(buf[:n]) != want || from.String() != peer.addr().String() {
				readDone <- fmt.Errorf("got %q from %v, want %q from %v", buf[:n], from, want, peer.addr())
				return
			}
		}
		readDone <- nil
	}()
	for i := 0; i < rounds; i++ {
		msg := []byte(fmt.Sprintf("ping %d", i))
		if _, err := relayConn.WriteTo(msg, peer.addr()); err != nil {
			t.Fatal(err)
		}
		from := peer.expect(t, msg)
		if from.Port != relayed.Port {
			t.Fatalf("peer saw data from %v, want relay port %d", from, relayed.Port)
		}
		if _, err := peer.conn.WriteToUDP([]byte(fmt.Sprintf("pong %d", i)), from); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond) // pace the rounds so the channel binding completes mid-way
	}
	if err := <-readDone; err != nil {
		t.Fatal(err)
	}
	if got := h.metric("switchboard_turn_relayed_packets_total", "transport", "udp", "direction", "to_peer"); got != rounds {
		t.Errorf("to_peer packets = %v, want %d", got, rounds)
	}
	if got := h.metric("switchboard_turn_relayed_packets_total", "transport", "udp", "direction", "to_client"); got != rounds {
		t.Errorf("to_client packets = %v, want %d", got, rounds)
	}

	// Close deallocates (Refresh with LIFETIME 0).
	if err := relayConn.Close(); err != nil {
		t.Fatal(err)
	}
	client.Close()
	testkit.Eventually(t, 5*time.Second, "deallocation", func() bool { return h.srv.AllocationCount() == 0 })
	if got := h.metric("switchboard_turn_allocations"); got != 0 {
		t.Fatalf("allocations gauge = %v after close, want 0", got)
	}
}

// TestRawRelay exercises every relay path by hand over UDP and TCP control
// connections: CreatePermission + Send/Data indications, ChannelBind +
// ChannelData both ways, Refresh, and deallocation.
func TestRawRelay(t *testing.T) {
	checkLeaks(t)
	for _, tcp := range []bool{false, true} {
		t.Run(map[bool]string{false: "udp", true: "tcp"}[tcp], func(t *testing.T) {
			h := startHarness(t, nil)
			peer := listenUDPPeer(t, "127.0.0.1:0")
			user, pass := restCreds("@bob:switchboard.test")
			c := dialRaw(t, h, tcp, user, pass)
			relayed := c.allocate()

			if r := c.request(stun.MethodCreatePermission, peerAddr(peer.addr())); r.Type.Class != stun.ClassSuccessResponse {
				t.Fatalf("CreatePermission: %d", errorCode(r))
			}
			c.send(sendIndication(peer.addr(), []byte("via send")))
			from := peer.expect(t, []byte("via send"))
			if from.Port != relayed.Port {
				t.Fatalf("peer saw %v, want relay port %d", from, relayed.Port)
			}
			if _, err := peer.conn.WriteToUDP([]byte("via data"), from); err != nil {
				t.Fatal(err)
			}
			c.expectData([]byte("via data"))

			if r := c.request(stun.MethodChannelBind, channelNumber(0x4001), peerAddr(peer.addr())); r.Type.Class != stun.ClassSuccessResponse {
				t.Fatalf("ChannelBind: %d", errorCode(r))
			}
			c.send(channelData(0x4001, []byte("via channel"), tcp))
			peer.expect(t, []byte("via channel"))
			if _, err := peer.conn.WriteToUDP([]byte("back via channel"), from); err != nil {
				t.Fatal(err)
			}
			c.expectData([]byte("back via channel"))

			r := c.request(stun.MethodRefresh, lifetime(300*time.Second))
			if r.Type.Class != stun.ClassSuccessResponse {
				t.Fatalf("Refresh: %d", errorCode(r))
			}
			lt, err := r.Get(stun.AttrLifetime)
			if err != nil || !bytes.Equal(lt, []byte{0, 0, 1, 44}) {
				t.Fatalf("Refresh LIFETIME = %v (%v), want 300 s", lt, err)
			}

			if r := c.request(stun.MethodRefresh, lifetime(0)); r.Type.Class != stun.ClassSuccessResponse {
				t.Fatalf("Refresh 0: %d", errorCode(r))
			}
			testkit.Eventually(t, 5*time.Second, "deallocation", func() bool { return h.srv.AllocationCount() == 0 })
		})
	}
}

// TestAllocationExpiry: an allocation that is not refreshed goes away when
// its lifetime ends; one refreshed in time keeps relaying.
func TestAllocationExpiry(t *testing.T) {
	checkLeaks(t)
	h := startHarness(t, nil)
	peer := listenUDPPeer(t, "127.0.0.1:0")
	userA, passA := restCreds("@expire:switchboard.test")
	userB, passB := restCreds("@refresh:switchboard.test")
	a := dialRaw(t, h, false, userA, passA)
	b := dialRaw(t, h, false, userB, passB)
	relayA := a.allocate(lifetime(2 * time.Second))
	b.allocate(lifetime(2 * time.Second))
	if r := b.request(stun.MethodRefresh, lifetime(600*time.Second)); r.Type.Class != stun.ClassSuccessResponse {
		t.Fatalf("Refresh: %d", errorCode(r))
	}
	if n := h.srv.AllocationCount(); n != 2 {
		t.Fatalf("allocations = %d, want 2", n)
	}
	// A's expiry is the clock: once it is gone, B's original lifetime has
	// passed too.
	testkit.Eventually(t, 10*time.Second, "unrefreshed allocation to expire", func() bool { return h.srv.AllocationCount() == 1 })
	if r := b.request(stun.MethodCreatePermission, peerAddr(peer.addr())); r.Type.Class != stun.ClassSuccessResponse {
		t.Fatalf("refreshed allocation is gone: CreatePermission %d", errorCode(r))
	}
	b.send(sendIndication(peer.addr(), []byte("still here")))
	peer.expect(t, []byte("still here"))
	// The expired allocation's relay port is closed: a datagram to it is
	// answered with ICMP port unreachable.
	probe, err := net.DialUDP("udp4", nil, relayA)
	if err != nil {
		t.Fatal(err)
	}
	defer probe.Close()
	if _, err := probe.Write([]byte("anyone?")); err != nil {
		t.Fatal(err)
	}
	_ = probe.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := probe.Read(make([]byte, 16)); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("expired relay port %v: read error %v, want connection refused", relayA, err)
	}
}
