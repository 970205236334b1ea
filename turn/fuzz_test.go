package turn

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/pion/stun/v4"
)

// fuzzServer is a Server with everything the inspector touches and no
// sockets.
func fuzzServer(t testing.TB) *Server {
	t.Helper()
	cfg := baseConfig().withDefaults()
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	policy, err := NewPolicy(cfg.AllowCIDRs, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	m, err := newMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &Server{
		cfg: cfg, log: cfg.Logger, policy: policy, metrics: m,
		auth:         &authenticator{realm: cfg.Realm, secret: cfg.SharedSecret, maxTTL: cfg.MaxTTL, now: time.Now},
		quotas:       newQuotas(cfg.UserQuota, cfg.TotalQuota),
		bindingLimit: newIPLimiter(cfg.BindingRatePerSec, time.Now),
		byRelay:      map[relayKey]*allocState{},
		conns:        map[*streamConn]struct{}{},
	}
}

// stunSeeds are well-formed requests of every kind the inspector reads.
func stunSeeds() [][]byte {
	user, pass := RESTCredentials(testSecret, "@f:x", time.Hour, time.Now())
	auth := []stun.Setter{stun.NewUsername(user), stun.NewRealm(testRealm), stun.NewNonce("nonce"),
		stun.NewLongTermIntegrity(user, testRealm, pass), stun.Fingerprint}
	peer := peerAddr(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 2), Port: 9})
	peer6 := peerAddr(&net.UDPAddr{IP: net.ParseIP("64:ff9b::7f00:1"), Port: 9})
	build := func(t stun.MessageType, extra ...stun.Setter) []byte {
		return stun.MustBuild(append([]stun.Setter{stun.TransactionID, t}, extra...)...).Raw
	}
	req := func(m stun.Method) stun.MessageType { return stun.NewType(m, stun.ClassRequest) }
	return [][]byte{
		build(stun.BindingRequest),
		build(req(stun.MethodAllocate), append([]stun.Setter{reqTransport(17)}, auth...)...),
		build(req(stun.MethodCreatePermission), append([]stun.Setter{peer, peer6}, auth...)...),
		build(req(stun.MethodChannelBind), append([]stun.Setter{channelNumber(0x4000), peer}, auth...)...),
		build(req(stun.MethodConnect), append([]stun.Setter{peer}, auth...)...),
		build(stun.NewType(stun.MethodAllocate, stun.ClassErrorResponse),
			&stun.ErrorCodeAttribute{Code: 401}, stun.NewNonce("abc"), stun.NewRealm("r")),
		sendIndication(&net.UDPAddr{IP: net.IPv4(8, 8, 8, 8), Port: 1}, []byte("data")),
		channelData(0x4001, []byte("hello"), true),
	}
}

// FuzzInspect feeds arbitrary bytes to everything that parses client or
// server STUN/TURN messages in this package, and checks the attribute
// walker and the XOR address decoder against pion/stun's decoder.
func FuzzInspect(f *testing.F) {
	for _, s := range stunSeeds() {
		f.Add(s)
	}
	srv := fuzzServer(f)
	src := netip.MustParseAddrPort("127.0.0.1:5000")
	local := netip.MustParseAddrPort("127.0.0.1:3478")
	f.Fuzz(func(t *testing.T, b []byte) {
		in := append([]byte(nil), b...)
		srv.inspectInbound(in, src, local)
		srv.observeOutbound(in)
		if !bytes.Equal(in, b) {
			t.Fatal("the inspector modified its input")
		}
		_, _ = turnFrameLen(b)

		h, ok := parseSTUNHeader(b)
		m := &stun.Message{Raw: append([]byte(nil), b...)}
		if m.Decode() != nil {
			if ok {
				walkAttrs(b, h, func(uint16, []byte) bool { return true })
			}
			return
		}
		if !ok && b[0]&0xc0 == 0 { // pion's Decode ignores the top bits; its server checks them first
			t.Fatalf("pion decodes a message our header parser rejects: % x", b)
		}
		if !ok {
			return
		}
		if uint16(m.Type.Method) != h.method || byte(m.Type.Class) != h.class || m.TransactionID != h.txid {
			t.Fatalf("header mismatch: pion %v %v, ours method %x class %d", m.Type, m.TransactionID, h.method, h.class)
		}
		i := 0
		walkOK := walkAttrs(b, h, func(typ uint16, val []byte) bool {
			if i >= len(m.Attributes) {
				t.Fatalf("walker found more attributes than pion")
			}
			a := m.Attributes[i]
			i++
			if compat := map[uint16]uint16{0x8020: 0x0020}[typ]; compat != 0 {
				typ = compat // pion reads the pre-RFC 5389 XOR-MAPPED-ADDRESS code as the current one
			}
			if uint16(a.Type) != typ || !bytes.Equal(a.Value, val) {
				t.Fatalf("attribute %d: pion %v % x, ours %x % x", i, a.Type, a.Value, typ, val)
			}
			if typ == attrXORPeerAddress {
				var pa stun.XORMappedAddress
				perr := pa.GetFromAs(m, stun.AttrXORPeerAddress)
				ours, ok := decodeXORAddress(val, h.txid)
				if i == firstAttrIndex(m, stun.AttrXORPeerAddress)+1 && perr == nil && ok {
					theirs, _ := netip.AddrFromSlice(pa.IP)
					if ours.Port() != uint16(pa.Port) || ours.Addr().Unmap() != theirs.Unmap() {
						t.Fatalf("XOR-PEER-ADDRESS: pion %v:%d, ours %v", pa.IP, pa.Port, ours)
					}
				}
			}
			return true
		})
		if !walkOK || i != len(m.Attributes) {
			t.Fatalf("walker saw %d attributes (ok=%v), pion %d", i, walkOK, len(m.Attributes))
		}
	})
}

func firstAttrIndex(m *stun.Message, t stun.AttrType) int {
	for i, a := range m.Attributes {
		if a.Type == t {
			return i
		}
	}
	return -1
}

// FuzzParseRESTUsername: whatever parses re-assembles into the input (up
// to leading zeros of the expiry), and nothing panics.
func FuzzParseRESTUsername(f *testing.F) {
	for _, s := range []string{"1700000000:@alice:example.org", "1:x", "0001:x", ":x", "x", "", "99999999999999999999:a"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		exp, user, err := parseRESTUsername(s)
		if err != nil {
			if !errors.Is(err, ErrBadUsername) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		if exp < 0 || user == "" {
			t.Fatalf("parsed %q into (%d, %q)", s, exp, user)
		}
		i := bytes.IndexByte([]byte(s), ':')
		got, perr := strconv.ParseInt(s[:i], 10, 64)
		if perr != nil || got != exp || s[i+1:] != user {
			t.Fatalf("parsed %q into (%d, %q); strconv says %d", s, exp, user, got)
		}
	})
}

// chunkConn is a net.Conn that returns its input in chunks of the given
// sizes, to exercise the stream framer's reassembly.
type chunkConn struct {
	net.Conn
	data   []byte
	chunks []byte
	wrote  bytes.Buffer
}

func (c *chunkConn) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := len(c.data)
	if len(c.chunks) > 0 {
		n = int(c.chunks[0])%len(c.data) + 1
		c.chunks = c.chunks[1:]
	}
	n = copy(p, c.data[:min(n, len(c.data))])
	c.data = c.data[n:]
	return n, nil
}

func (c *chunkConn) Write(p []byte) (int, error) { return c.wrote.Write(p) }
func (c *chunkConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5000}
}
func (c *chunkConn) LocalAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 3478} }

// FuzzStreamFraming: a stream of well-formed frames cut at arbitrary points
// reaches pion as the same frames, in order; arbitrary bytes never panic.
func FuzzStreamFraming(f *testing.F) {
	var all []byte
	for _, s := range stunSeeds() {
		all = append(all, s...)
	}
	f.Add(all, []byte{1, 7, 200, 3})
	f.Add([]byte{0x40, 0x00, 0x00, 0x01, 'x', 0, 0, 0}, []byte{0})
	f.Add([]byte{0xff, 0xff}, []byte{})
	srv := fuzzServer(f)
	f.Fuzz(func(t *testing.T, data, chunks []byte) {
		// Keep only the prefix made of whole frames the inspector passes
		// as they are (no Binding requests: those are rate-limited).
		var want []byte
		for rest := data; len(rest) > 0; {
			n, ok := turnFrameLen(rest)
			if !ok || n == 0 {
				break
			}
			if h, ok := parseSTUNHeader(rest[:n]); ok && h.method == methodBinding {
				break
			}
			want = append(want, rest[:n]...)
			rest = rest[n:]
		}
		c := &chunkConn{data: append([]byte(nil), want...), chunks: chunks}
		sc := newStreamConn(c, srv)
		sc.handshaken = true
		var got []byte
		buf := make([]byte, 1600)
		for {
			n, err := sc.Read(buf)
			got = append(got, buf[:n]...)
			if err != nil {
				break
			}
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("framer delivered %d bytes, want %d", len(got), len(want))
		}
		// Arbitrary bytes: no panic, no more than was sent.
		c2 := &chunkConn{data: append([]byte(nil), data...), chunks: chunks}
		sc2 := newStreamConn(c2, srv)
		sc2.handshaken = true
		total := 0
		for {
			n, err := sc2.Read(buf)
			total += n
			if err != nil {
				break
			}
		}
		if total > len(data) {
			t.Fatalf("framer invented bytes: %d > %d", total, len(data))
		}
	})
}
