package turn

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"
)

const (
	testRealm  = "switchboard.test"
	testSecret = "test-shared-secret"
)

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// harness is a relay on loopback: UDP and TCP listeners on 127.0.0.1.
type harness struct {
	t       *testing.T
	srv     *Server
	cfg     Config
	reg     *prometheus.Registry
	logs    *syncBuffer
	udpAddr *net.UDPAddr
	tcpAddr *net.TCPAddr
}

func baseConfig() Config {
	return Config{
		Realm:            testRealm,
		SharedSecret:     testSecret,
		RelayIP:          net.IPv4(127, 0, 0, 1),
		RelayBindAddress: "127.0.0.1",
		AllowCIDRs:       []string{"127.0.0.1/32"},
	}
}

func startHarness(t *testing.T, mutate func(*Config)) *harness {
	t.Helper()
	return startHarnessOn(t, "127.0.0.1", mutate)
}

// startHarnessOn starts a relay whose listeners bind to ip (port 0).
func startHarnessOn(t *testing.T, ip string, mutate func(*Config)) *harness {
	t.Helper()
	h := &harness{t: t, reg: prometheus.NewRegistry(), logs: &syncBuffer{}}
	cfg := baseConfig()
	cfg.Registerer = h.reg
	cfg.Logger = slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if mutate != nil {
		mutate(&cfg)
	}
	pc, err := net.ListenPacket("udp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	h.udpAddr = pc.LocalAddr().(*net.UDPAddr)
	h.tcpAddr = ln.Addr().(*net.TCPAddr)
	h.srv, err = New(cfg, []net.PacketConn{pc}, []net.Listener{ln})
	if err != nil {
		_ = pc.Close()
		_ = ln.Close()
		t.Fatal(err)
	}
	h.cfg = h.srv.cfg
	t.Cleanup(func() {
		if err := h.srv.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		if t.Failed() {
			t.Logf("server logs:\n%s", h.logs.String())
		}
	})
	return h
}

// metric returns the value of a counter or gauge with the given labels.
func (h *harness) metric(name string, labels ...string) float64 {
	h.t.Helper()
	mfs, err := h.reg.Gather()
	if err != nil {
		h.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if labelsMatch(m, labels) {
				switch {
				case m.Counter != nil:
					return m.Counter.GetValue()
				case m.Gauge != nil:
					return m.Gauge.GetValue()
				}
			}
		}
	}
	return 0
}

func labelsMatch(m *dto.Metric, kv []string) bool {
	for i := 0; i+1 < len(kv); i += 2 {
		found := false
		for _, lp := range m.GetLabel() {
			if lp.GetName() == kv[i] && lp.GetValue() == kv[i+1] {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// rawClient speaks TURN by hand (pion/stun for encoding), over UDP or TCP,
// so tests control every attribute.
type rawClient struct {
	t                         *testing.T
	conn                      net.Conn
	tcp                       bool
	username, password, realm string
	nonce                     string
	responses                 chan *stun.Message
	data                      chan []byte // Data indication payloads and ChannelData payloads
	other                     chan *stun.Message
	done                      chan struct{}
}

func dialRaw(t *testing.T, h *harness, tcp bool, username, password string) *rawClient {
	t.Helper()
	var (
		c   net.Conn
		err error
	)
	if tcp {
		c, err = net.Dial("tcp", h.tcpAddr.String())
	} else {
		c, err = net.Dial("udp", h.udpAddr.String())
	}
	if err != nil {
		t.Fatal(err)
	}
	return wrapRaw(t, c, tcp, username, password)
}

// wrapRaw makes a rawClient of an established connection.
func wrapRaw(t *testing.T, c net.Conn, tcp bool, username, password string) *rawClient {
	t.Helper()
	rc := &rawClient{
		t: t, conn: c, tcp: tcp, username: username, password: password, realm: testRealm,
		responses: make(chan *stun.Message, 64), data: make(chan []byte, 1024),
		other: make(chan *stun.Message, 64), done: make(chan struct{}),
	}
	go rc.readLoop()
	t.Cleanup(rc.close)
	return rc
}

func (c *rawClient) close() {
	_ = c.conn.Close()
	<-c.done
}

func (c *rawClient) readLoop() {
	defer close(c.done)
	buf := make([]byte, 70000)
	w := 0
	for {
		n, err := c.conn.Read(buf[w:])
		if err != nil {
			return
		}
		if !c.tcp {
			c.dispatch(append([]byte(nil), buf[:n]...))
			continue
		}
		w += n
		for {
			fl, ok := turnFrameLen(buf[:w])
			if !ok {
				return
			}
			if fl == 0 {
				break
			}
			c.dispatch(append([]byte(nil), buf[:fl]...))
			copy(buf, buf[fl:w])
			w -= fl
		}
	}
}

func (c *rawClient) dispatch(b []byte) {
	if isChannelData(b) {
		l := int(b[2])<<8 | int(b[3])
		if 4+l <= len(b) {
			c.data <- b[4 : 4+l]
		}
		return
	}
	m := &stun.Message{Raw: b}
	if m.Decode() != nil {
		return
	}
	switch {
	case m.Type.Class == stun.ClassSuccessResponse || m.Type.Class == stun.ClassErrorResponse:
		c.responses <- m
	case m.Type.Method == stun.MethodData:
		var d dataAttr
		if d.GetFrom(m) == nil {
			c.data <- d
		}
	default:
		c.other <- m
	}
}

type dataAttr []byte

func (d *dataAttr) GetFrom(m *stun.Message) error {
	v, err := m.Get(stun.AttrData)
	if err != nil {
		return err
	}
	*d = append([]byte(nil), v...)
	return nil
}

func (c *rawClient) send(b []byte) {
	c.t.Helper()
	if _, err := c.conn.Write(b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// transact sends m and waits for the response with its transaction ID.
func (c *rawClient) transact(m *stun.Message) *stun.Message {
	c.t.Helper()
	c.send(m.Raw)
	timeout := time.After(5 * time.Second)
	for {
		select {
		case r := <-c.responses:
			if r.TransactionID == m.TransactionID {
				return r
			}
		case <-timeout:
			c.t.Fatalf("no response to %v", m.Type)
			return nil
		}
	}
}

// request builds and performs an authenticated request, fetching a nonce
// first if the client has none.
func (c *rawClient) request(method stun.Method, attrs ...stun.Setter) *stun.Message {
	c.t.Helper()
	if c.nonce == "" {
		c.fetchNonce()
	}
	return c.transact(c.build(method, c.nonce, attrs...))
}

func (c *rawClient) fetchNonce() {
	c.t.Helper()
	m := stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest),
		reqTransport(17), stun.Fingerprint)
	r := c.transact(m)
	var nonce stun.Nonce
	if err := nonce.GetFrom(r); err != nil {
		c.t.Fatalf("no nonce in %v: %v", r, err)
	}
	c.nonce = nonce.String()
}

func (c *rawClient) build(method stun.Method, nonce string, attrs ...stun.Setter) *stun.Message {
	setters := []stun.Setter{stun.TransactionID, stun.NewType(method, stun.ClassRequest)}
	setters = append(setters, attrs...)
	setters = append(setters,
		stun.NewUsername(c.username), stun.NewRealm(c.realm), stun.NewNonce(nonce),
		stun.NewLongTermIntegrity(c.username, c.realm, c.password), stun.Fingerprint)
	return stun.MustBuild(setters...)
}

func reqTransport(proto byte) stun.Setter {
	return rawAttr{stun.AttrRequestedTransport, []byte{proto, 0, 0, 0}}
}

func lifetime(d time.Duration) stun.Setter {
	s := uint32(d / time.Second)
	return rawAttr{stun.AttrLifetime, []byte{byte(s >> 24), byte(s >> 16), byte(s >> 8), byte(s)}}
}

func channelNumber(n uint16) stun.Setter {
	return rawAttr{stun.AttrChannelNumber, []byte{byte(n >> 8), byte(n), 0, 0}}
}

func peerAddr(a *net.UDPAddr) stun.Setter {
	return xorAddr{stun.AttrXORPeerAddress, a.IP, a.Port}
}

func tcpPeerAddr(a *net.TCPAddr) stun.Setter {
	return xorAddr{stun.AttrXORPeerAddress, a.IP, a.Port}
}

type rawAttr struct {
	t stun.AttrType
	v []byte
}

func (a rawAttr) AddTo(m *stun.Message) error {
	m.Add(a.t, a.v)
	return nil
}

type xorAddr struct {
	t    stun.AttrType
	ip   net.IP
	port int
}

func (a xorAddr) AddTo(m *stun.Message) error {
	return (&stun.XORMappedAddress{IP: a.ip, Port: a.port}).AddToAs(m, a.t)
}

func errorCode(m *stun.Message) int {
	var ec stun.ErrorCodeAttribute
	if m.Type.Class != stun.ClassErrorResponse {
		return 0
	}
	if ec.GetFrom(m) != nil {
		return -1
	}
	return int(ec.Code)
}

// allocate performs an Allocate and returns the relayed address.
func (c *rawClient) allocate(extra ...stun.Setter) *net.UDPAddr {
	c.t.Helper()
	r := c.request(stun.MethodAllocate, append([]stun.Setter{reqTransport(17)}, extra...)...)
	if r.Type.Class != stun.ClassSuccessResponse {
		c.t.Fatalf("allocate failed: %d", errorCode(r))
	}
	var relayed stun.XORMappedAddress
	if err := relayed.GetFromAs(r, stun.AttrXORRelayedAddress); err != nil {
		c.t.Fatal(err)
	}
	return &net.UDPAddr{IP: relayed.IP, Port: relayed.Port}
}

func sendIndication(peer *net.UDPAddr, payload []byte) []byte {
	return stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodSend, stun.ClassIndication),
		peerAddr(peer), rawAttr{stun.AttrData, payload}, stun.Fingerprint).Raw
}

func channelData(ch uint16, payload []byte, tcp bool) []byte {
	n := len(payload)
	b := []byte{byte(ch >> 8), byte(ch), byte(n >> 8), byte(n)}
	b = append(b, payload...)
	if tcp {
		for len(b)%4 != 0 {
			b = append(b, 0)
		}
	}
	return b
}

// expectData waits for relayed data on the client side.
func (c *rawClient) expectData(want []byte) {
	c.t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case d := <-c.data:
			if bytes.Equal(d, want) {
				return
			}
		case <-timeout:
			c.t.Fatalf("relayed data %q never reached the client", want)
		}
	}
}

// udpPeer is a peer socket on a loopback address.
type udpPeer struct {
	conn *net.UDPConn
	got  chan []byte
	from chan *net.UDPAddr
}

func listenUDPPeer(t *testing.T, addr string) *udpPeer {
	t.Helper()
	c, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Fatalf("peer listen %s: %v", addr, err)
	}
	p := &udpPeer{conn: c.(*net.UDPConn), got: make(chan []byte, 1024), from: make(chan *net.UDPAddr, 1024)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, from, err := p.conn.ReadFromUDP(buf)
			if err != nil {
				return
			}
			p.got <- append([]byte(nil), buf[:n]...)
			p.from <- from
		}
	}()
	t.Cleanup(func() { _ = p.conn.Close(); <-done })
	return p
}

func (p *udpPeer) addr() *net.UDPAddr { return p.conn.LocalAddr().(*net.UDPAddr) }

func (p *udpPeer) expect(t *testing.T, want []byte) *net.UDPAddr {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case d := <-p.got:
			from := <-p.from
			if bytes.Equal(d, want) {
				return from
			}
		case <-timeout:
			t.Fatalf("peer %v never received %q", p.addr(), want)
			return nil
		}
	}
}

// received drains and returns what the peer has got so far.
func (p *udpPeer) received() [][]byte {
	var out [][]byte
	for {
		select {
		case d := <-p.got:
			<-p.from
			out = append(out, d)
		default:
			return out
		}
	}
}

func isClosedErr(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) || strings.Contains(fmt.Sprint(err), "closed")
}

// checkLeaks verifies, after every other cleanup of t has run, that no
// goroutine outlives the test.
func checkLeaks(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
}

func netipZero() netip.AddrPort { return netip.AddrPort{} }

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
