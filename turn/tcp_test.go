package turn

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/switchboard-chat/switchboard/internal/testkit"
)

// TestTCPRelayConnectionBind runs RFC 6062 end to end: a TCP allocation,
// Connect to a TCP peer, ConnectionBind on a second client connection, and
// raw data both ways over it (the stream framer must step aside).
func TestTCPRelayConnectionBind(t *testing.T) {
	checkLeaks(t)
	h := startHarness(t, nil)
	peerLn, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer peerLn.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := peerLn.Accept()
		if err == nil {
			accepted <- c
		}
		close(accepted)
	}()

	u, p := restCreds("@tcp:switchboard.test")
	ctrl := dialRaw(t, h, true, u, p)
	if r := ctrl.request(stun.MethodAllocate, reqTransport(6)); r.Type.Class != stun.ClassSuccessResponse {
		t.Fatalf("TCP allocation: %d", errorCode(r))
	}
	r := ctrl.request(stun.MethodConnect, tcpPeerAddr(peerLn.Addr().(*net.TCPAddr)))
	if r.Type.Class != stun.ClassSuccessResponse {
		t.Fatalf("Connect: %d", errorCode(r))
	}
	connID, err := r.Get(stun.AttrConnectionID)
	if err != nil {
		t.Fatal(err)
	}
	peer, ok := <-accepted
	if !ok {
		t.Fatal("peer saw no connection")
	}
	defer peer.Close()

	// The data connection: ConnectionBind, then raw bytes.
	data, err := net.Dial("tcp4", h.tcpAddr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer data.Close()
	bind := ctrl.build(stun.MethodConnectionBind, ctrl.nonce, rawAttr{stun.AttrConnectionID, connID})
	if _, err := data.Write(bind.Raw); err != nil {
		t.Fatal(err)
	}
	resp := readFrame(t, data)
	m := &stun.Message{Raw: resp}
	if err := m.Decode(); err != nil || m.Type.Class != stun.ClassSuccessResponse {
		t.Fatalf("ConnectionBind: %v %v", m.Type, err)
	}
	// Bytes that look like nothing TURN knows must pass untouched now.
	up := []byte("\xff\xfe raw bytes from the client, not a TURN frame")
	if _, err := data.Write(up); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(up))
	_ = peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(peer, got); err != nil || !bytes.Equal(got, up) {
		t.Fatalf("peer got %q, %v", got, err)
	}
	down := []byte("and back from the peer")
	if _, err := peer.Write(down); err != nil {
		t.Fatal(err)
	}
	got = make([]byte, len(down))
	_ = data.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(data, got); err != nil || !bytes.Equal(got, down) {
		t.Fatalf("client got %q, %v", got, err)
	}
	testkit.Eventually(t, 5*time.Second, "tcp bytes counted", func() bool {
		return h.metric("switchboard_turn_relayed_bytes_total", "transport", "tcp", "direction", "to_peer") == float64(len(up)) &&
			h.metric("switchboard_turn_relayed_bytes_total", "transport", "tcp", "direction", "to_client") == float64(len(down))
	})
}

// readFrame reads one STUN message from a stream.
func readFrame(t *testing.T, c net.Conn) []byte {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	hdr := make([]byte, stunHeaderLen)
	if _, err := io.ReadFull(c, hdr); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, int(hdr[2])<<8|int(hdr[3]))
	if _, err := io.ReadFull(c, body); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Time{})
	return append(hdr, body...)
}

// selfSigned returns a TLS certificate for 127.0.0.1.
func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "turn.switchboard.test"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestTLSListener: a TLS listener (as for port 5349) serves TURN: allocate,
// permission and data through the relay; a client that never completes the
// handshake does not hold anything up.
func TestTLSListener(t *testing.T) {
	checkLeaks(t)
	cert := selfSigned(t)
	ln, err := tls.Listen("tcp4", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	cfg := baseConfig()
	cfg.Logger = discardLogger()
	srv, err := New(cfg, nil, []net.Listener{ln})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := srv.Close(); err != nil {
			t.Error(err)
		}
	}()
	// A silent TCP client first: it must not block the next one.
	silent, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()

	pool := x509.NewCertPool()
	leaf, _ := x509.ParseCertificate(cert.Certificate[0])
	pool.AddCert(leaf)
	conn, err := tls.Dial("tcp4", ln.Addr().String(), &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	peer := listenUDPPeer(t, "127.0.0.1:0")
	u, p := restCreds("@tls:switchboard.test")
	c := wrapRaw(t, conn, true, u, p)
	c.allocate()
	if r := c.request(stun.MethodChannelBind, channelNumber(0x4002), peerAddr(peer.addr())); r.Type.Class != stun.ClassSuccessResponse {
		t.Fatalf("ChannelBind: %d", errorCode(r))
	}
	c.send(channelData(0x4002, []byte("over tls"), true))
	from := peer.expect(t, []byte("over tls"))
	if _, err := peer.conn.WriteToUDP([]byte("back over tls"), from); err != nil {
		t.Fatal(err)
	}
	c.expectData([]byte("back over tls"))
}
