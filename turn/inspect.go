package turn

import (
	"net/netip"

	"github.com/pion/stun/v4"
)

// The request inspector sits between the client-facing sockets and pion. It
// sees every inbound message before pion does and answers some itself:
//
//   - 401 (RFC 8489 §9.2.4) for a request whose nonce pion issued but whose
//     realm, username (expired, too far ahead, malformed, unknown) or
//     MESSAGE-INTEGRITY is wrong. pion v5.1.1 answers these with 400, and
//     the Matrix clients and coturn's tools expect 401.
//   - 403 (RFC 8656 §9.2, §11.2; RFC 6062 §5.2) for an authenticated
//     CreatePermission, ChannelBind or Connect naming a peer the policy
//     refuses. pion's own PermissionHandler sees only the peer IP; this
//     sees the port too (own listener addresses) and logs per allocation.
//   - nothing, for unauthenticated Binding requests over the per-source
//     rate limit.
//
// Everything else, including ChannelData and indications, goes to pion
// untouched; Send and ChannelData toward refused peers are stopped again at
// the relay socket (relay.go).

// inspectInbound decides what to do with one inbound message b from src,
// received on the server address local.
// reply, when not nil, is sent back to src; pass says whether pion gets b.
func (s *Server) inspectInbound(b []byte, src, local netip.AddrPort) (reply []byte, pass bool) {
	if isChannelData(b) {
		return nil, true
	}
	h, ok := parseSTUNHeader(b)
	if !ok || h.class != classRequest {
		return nil, true
	}
	switch h.method {
	case methodBinding:
		if !s.bindingLimit.allow(src.Addr()) {
			s.metrics.bindingLimit.Inc()
			return nil, false
		}
		return nil, true
	case methodAllocate, methodRefresh, methodCreatePermission, methodChannelBind, methodConnect, methodConnectionBind:
		return s.inspectAuthenticated(b, h, src, local)
	}
	return nil, true
}

// requestFields is what the inspector reads from an authenticated request.
type requestFields struct {
	username, realm, nonce string
	hasIntegrity           bool
	hasUsername, hasRealm  bool
	hasNonce               bool
	peers                  [maxPeersPerRequest]netip.AddrPort
	nPeers                 int
	tooManyPeers, badPeer  bool
}

func readRequestFields(b []byte, h stunHeader) (f requestFields, ok bool) {
	ok = walkAttrs(b, h, func(typ uint16, val []byte) bool {
		switch typ { // the first of each counts, as in pion's Message.Get
		case attrUsername:
			if !f.hasUsername {
				f.username, f.hasUsername = string(val), true
			}
		case attrRealm:
			if !f.hasRealm {
				f.realm, f.hasRealm = string(val), true
			}
		case attrNonce:
			if !f.hasNonce {
				f.nonce, f.hasNonce = string(val), true
			}
		case attrMessageIntegrity:
			f.hasIntegrity = true
		case attrXORPeerAddress:
			ap, ok := decodeXORAddress(val, h.txid)
			switch {
			case !ok:
				f.badPeer = true
			case f.nPeers == len(f.peers):
				f.tooManyPeers = true
			default:
				f.peers[f.nPeers] = ap
				f.nPeers++
			}
		}
		return true
	})
	return f, ok
}

func (s *Server) inspectAuthenticated(b []byte, h stunHeader, src, local netip.AddrPort) (reply []byte, pass bool) {
	f, ok := readRequestFields(b, h)
	// Requests without credentials, with missing fields or with a nonce
	// pion did not issue recently are pion's to answer (401, 400, 438).
	if !ok || !f.hasIntegrity || f.username == "" || f.realm == "" || f.nonce == "" || !s.nonces.known(f.nonce) {
		return nil, true
	}
	_, key, label, err := s.auth.lookup(f.username, f.realm)
	if err == nil {
		msg := &stun.Message{Raw: append([]byte(nil), b[:stunHeaderLen+h.length]...)}
		if msg.Decode() != nil {
			return nil, true
		}
		if stun.MessageIntegrity(key).Check(msg) != nil {
			label = authBadHMAC
			err = ErrUnknownUser
		}
	}
	if err != nil {
		s.metrics.authFailures.WithLabelValues(label).Inc()
		s.log.Debug("turn: credentials refused", "reason", label, "client", src, "username", f.username)
		return s.buildError(h, stun.CodeUnauthorized, nil,
			stun.NewNonce(f.nonce), stun.NewRealm(s.cfg.Realm)), false
	}
	if h.method != methodCreatePermission && h.method != methodChannelBind && h.method != methodConnect {
		return nil, true
	}
	if f.tooManyPeers {
		return s.buildError(h, stun.CodeBadRequest, key), false
	}
	for i := 0; i < f.nPeers; i++ {
		peer := f.peers[i]
		if r := s.policy.Check(peer); r != ReasonNone {
			s.denied(src, local, peer, r, methodName(h.method))
			return s.buildError(h, stun.CodeForbidden, key), false
		}
	}
	return nil, true
}

func methodName(m uint16) string {
	switch m {
	case methodCreatePermission:
		return "CreatePermission"
	case methodChannelBind:
		return "ChannelBind"
	case methodConnect:
		return "Connect"
	}
	return "Send"
}

// buildError builds an error response to the request with header h; key,
// if not nil, adds MESSAGE-INTEGRITY (RFC 8489 §9.2.4: responses to
// authenticated requests carry it).
func (s *Server) buildError(h stunHeader, code stun.ErrorCode, key []byte, extra ...stun.Setter) []byte {
	setters := make([]stun.Setter, 0, 4+len(extra))
	setters = append(setters,
		stun.NewTransactionIDSetter(h.txid),
		stun.NewType(stun.Method(h.method), stun.ClassErrorResponse),
		&stun.ErrorCodeAttribute{Code: code},
	)
	setters = append(setters, extra...)
	if key != nil {
		setters = append(setters, stun.MessageIntegrity(key))
	}
	msg, err := stun.Build(setters...)
	if err != nil {
		return nil
	}
	return msg.Raw
}

// observeOutbound watches what pion sends to clients: the nonces it hands
// out (401/438 responses) go into the nonce book, and 438s are counted.
// ChannelData and indications return at the first byte comparisons.
func (s *Server) observeOutbound(b []byte) {
	if len(b) < stunHeaderLen || b[0]&0xc0 != 0 || b[1]&0x10 == 0 || b[0]&0x01 == 0 {
		return // not STUN, or not an error response (class bits C1 C0 = 1 1)
	}
	h, ok := parseSTUNHeader(b)
	if !ok || h.class != classError {
		return
	}
	code := 0
	var nonce []byte
	walkAttrs(b, h, func(typ uint16, val []byte) bool {
		switch typ {
		case attrErrorCode:
			if code == 0 {
				code, _ = errorCodeOf(val)
			}
		case attrNonce:
			if nonce == nil {
				nonce = val
			}
		}
		return true
	})
	if nonce == nil || (code != 401 && code != 438) {
		return
	}
	if code == 438 {
		s.metrics.authFailures.WithLabelValues(authStaleNonce).Inc()
	}
	s.nonces.add(string(nonce))
}
