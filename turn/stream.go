package turn

import (
	"context"
	"crypto/tls"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// tlsHandshakeTimeout bounds a TLS client's handshake.
const tlsHandshakeTimeout = 10 * time.Second

// maxTURNFrame is the largest STUN message or padded ChannelData frame.
const maxTURNFrame = stunHeaderLen + 0xffff + 3

// streamConn is a client's TCP or TLS connection as pion sees it. A stream
// carries STUN messages and ChannelData back to back (RFC 8656 §12.5); Read
// cuts it into frames, runs each through the request inspector and hands
// pion only the frames that pass, one at a time. After a successful
// ConnectionBind (RFC 6062 §5.4) the connection carries raw peer data and
// Read becomes a plain pass-through.
type streamConn struct {
	net.Conn
	s             *Server
	tls           *tls.Conn
	remote, local netip.AddrPort

	// Read side, used only by the goroutine calling Read.
	handshaken bool
	buf        []byte
	r, w       int    // unconsumed input is buf[r:w]
	out        []byte // the passed frame still being handed to pion

	raw      atomic.Bool
	bindTxID atomic.Pointer[[12]byte] // ConnectionBind awaiting pion's answer
	once     sync.Once
}

func newStreamConn(c net.Conn, s *Server) *streamConn {
	sc := &streamConn{
		Conn:   c,
		s:      s,
		remote: addrPortOf(c.RemoteAddr()),
		local:  addrPortOf(c.LocalAddr()),
	}
	if t, ok := c.(*tls.Conn); ok {
		sc.tls = t
	}
	return sc
}

func (c *streamConn) handshake() error {
	c.handshaken = true
	if c.tls == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), tlsHandshakeTimeout)
	defer cancel()
	return c.tls.HandshakeContext(ctx)
}

func (c *streamConn) Read(p []byte) (int, error) {
	if !c.handshaken {
		if err := c.handshake(); err != nil {
			return 0, err
		}
	}
	for {
		if len(c.out) > 0 {
			n := copy(p, c.out)
			c.out = c.out[n:]
			return n, nil
		}
		if c.raw.Load() {
			if c.r < c.w {
				n := copy(p, c.buf[c.r:c.w])
				c.r += n
				return n, nil
			}
			return c.Conn.Read(p)
		}
		n, ok := turnFrameLen(c.buf[c.r:c.w])
		if !ok {
			return 0, errBadFrame
		}
		if n > 0 {
			frame := c.buf[c.r : c.r+n]
			c.r += n
			if isChannelData(frame) && c.s.relayChannelData(frame, c.remote, c.local) {
				continue
			}
			reply, pass := c.s.inspectInbound(frame, c.remote, c.local)
			if reply != nil {
				if _, err := c.Conn.Write(reply); err != nil {
					return 0, err
				}
			}
			if pass {
				c.noteConnectionBind(frame)
				c.out = frame
			}
			continue
		}
		if err := c.fill(); err != nil {
			return 0, err
		}
	}
}

// fill reads more of the stream into buf, compacting it first.
func (c *streamConn) fill() error {
	if c.buf == nil {
		c.buf = make([]byte, 4096)
	}
	if c.r > 0 {
		copy(c.buf, c.buf[c.r:c.w])
		c.w -= c.r
		c.r = 0
	}
	if c.w == len(c.buf) {
		if len(c.buf) >= maxTURNFrame {
			return errBadFrame
		}
		nb := make([]byte, min(2*len(c.buf), maxTURNFrame+1))
		copy(nb, c.buf[:c.w])
		c.buf = nb
	}
	n, err := c.Conn.Read(c.buf[c.w:])
	c.w += n
	if n > 0 {
		return nil
	}
	return err
}

// noteConnectionBind remembers a ConnectionBind request handed to pion, so
// that Write can switch the stream to raw mode when pion accepts it.
func (c *streamConn) noteConnectionBind(frame []byte) {
	h, ok := parseSTUNHeader(frame)
	if ok && h.class == classRequest && h.method == methodConnectionBind {
		tx := h.txid
		c.bindTxID.Store(&tx)
	}
}

func (c *streamConn) Write(p []byte) (int, error) {
	c.s.observeOutbound(p)
	if tx := c.bindTxID.Load(); tx != nil {
		if h, ok := parseSTUNHeader(p); ok && h.method == methodConnectionBind && h.txid == *tx {
			if h.class == classSuccess {
				c.raw.Store(true)
			}
			c.bindTxID.Store(nil)
		}
	}
	return c.Conn.Write(p)
}

func (c *streamConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.s.connMu.Lock()
		delete(c.s.conns, c)
		c.s.connMu.Unlock()
		c.s.streams.CompareAndDelete(tupleKey{c.remote, c.local}, c)
		c.s.loops.Done()
	})
	return err
}
