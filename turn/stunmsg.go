package turn

import (
	"encoding/binary"
	"net/netip"
)

// This file is the little STUN parsing Switchboard does itself, on top of
// what pion does: enough to read a message header, walk its attributes and
// decode XOR-PEER-ADDRESS, without allocating. Everything here treats its
// input as hostile; malformed input yields ok == false, never a panic.

const (
	stunHeaderLen   = 20
	stunMagicCookie = 0x2112A442

	attrUsername         = 0x0006
	attrMessageIntegrity = 0x0008
	attrErrorCode        = 0x0009
	attrXORPeerAddress   = 0x0012
	attrRealm            = 0x0014
	attrNonce            = 0x0015
	attrMISHA256         = 0x001c
	attrFingerprint      = 0x8028

	methodBinding          = 0x001
	methodAllocate         = 0x003
	methodRefresh          = 0x004
	methodCreatePermission = 0x008
	methodChannelBind      = 0x009
	methodConnect          = 0x00a
	methodConnectionBind   = 0x00b

	classRequest    = 0
	classIndication = 1
	classSuccess    = 2
	classError      = 3

	// maxPeersPerRequest bounds how many XOR-PEER-ADDRESS attributes one
	// request may carry before the inspector refuses it outright.
	maxPeersPerRequest = 32
)

// isChannelData reports whether b starts like a ChannelData message: the
// first two bits are 01 (RFC 8656 §12.4, channel numbers 0x4000-0x7FFF).
func isChannelData(b []byte) bool {
	return len(b) >= 4 && b[0]&0xc0 == 0x40
}

// stunHeader is the decoded fixed header of a STUN message (RFC 8489 §5).
type stunHeader struct {
	method uint16
	class  uint8
	length int // of the attributes, excluding the header
	txid   [12]byte
}

// parseSTUNHeader decodes the header of b. ok is false unless b is a STUN
// message: top bits 00, magic cookie, a length that is a multiple of four
// and fits in b.
func parseSTUNHeader(b []byte) (h stunHeader, ok bool) {
	if len(b) < stunHeaderLen || b[0]&0xc0 != 0 {
		return h, false
	}
	if binary.BigEndian.Uint32(b[4:8]) != stunMagicCookie {
		return h, false
	}
	t := binary.BigEndian.Uint16(b[0:2])
	h.length = int(binary.BigEndian.Uint16(b[2:4]))
	if h.length%4 != 0 || stunHeaderLen+h.length > len(b) {
		return h, false
	}
	h.method = t&0x000f | (t>>1)&0x0070 | (t>>2)&0x0f80
	h.class = uint8((t>>7)&0x2 | (t>>4)&0x1)
	copy(h.txid[:], b[8:20])
	return h, true
}

// walkAttrs calls fn with the type and value of every attribute of the
// message b whose header is h, in order, until fn returns false. Like pion
// (and RFC 8489 §14.5), it skips attributes after MESSAGE-INTEGRITY other
// than MESSAGE-INTEGRITY-SHA256 and FINGERPRINT, so that it never reads a
// field pion does not. It returns false if the attribute list is malformed
// (an attribute runs past the end).
func walkAttrs(b []byte, h stunHeader, fn func(typ uint16, val []byte) bool) bool {
	body := b[stunHeaderLen : stunHeaderLen+h.length]
	seenMI, seenMI256 := false, false
	for len(body) > 0 {
		if len(body) < 4 {
			return false
		}
		typ := binary.BigEndian.Uint16(body[0:2])
		n := int(binary.BigEndian.Uint16(body[2:4]))
		padded := (n + 3) &^ 3
		if 4+padded > len(body) {
			return false
		}
		val := body[4 : 4+n]
		body = body[4+padded:]
		isMI, isMI256, isFP := typ == attrMessageIntegrity, typ == attrMISHA256, typ == attrFingerprint
		if (seenMI && !isMI256 && !isFP) || (!seenMI && seenMI256 && !isFP) {
			continue
		}
		seenMI = seenMI || isMI
		seenMI256 = seenMI256 || isMI256
		if !fn(typ, val) {
			return true
		}
	}
	return true
}

// decodeXORAddress decodes an XOR-MAPPED-ADDRESS style value (RFC 8489
// §14.2): family 0x01 with 4 address bytes or 0x02 with 16, XORed with the
// magic cookie and, for IPv6, the transaction ID.
func decodeXORAddress(v []byte, txid [12]byte) (netip.AddrPort, bool) {
	if len(v) < 4 {
		return netip.AddrPort{}, false
	}
	port := binary.BigEndian.Uint16(v[2:4]) ^ uint16(stunMagicCookie>>16)
	var key [16]byte
	binary.BigEndian.PutUint32(key[0:4], stunMagicCookie)
	copy(key[4:], txid[:])
	switch v[1] {
	case 0x01:
		if len(v) != 8 {
			return netip.AddrPort{}, false
		}
		var a [4]byte
		for i := range a {
			a[i] = v[4+i] ^ key[i]
		}
		return netip.AddrPortFrom(netip.AddrFrom4(a), port), true
	case 0x02:
		if len(v) != 20 {
			return netip.AddrPort{}, false
		}
		var a [16]byte
		for i := range a {
			a[i] = v[4+i] ^ key[i]
		}
		return netip.AddrPortFrom(netip.AddrFrom16(a), port), true
	}
	return netip.AddrPort{}, false
}

// errorCodeOf returns the ERROR-CODE (RFC 8489 §14.8) of an error response.
func errorCodeOf(v []byte) (int, bool) {
	if len(v) < 4 {
		return 0, false
	}
	return int(v[2]&0x7)*100 + int(v[3]), true
}

// turnFrameLen returns the length of the STUN or ChannelData frame at the
// start of a TCP/TLS stream b (RFC 8656 §12.5: ChannelData is padded to a
// multiple of four over streams). n == 0 with ok == true means more bytes
// are needed; ok == false means b does not start with a TURN frame.
func turnFrameLen(b []byte) (n int, ok bool) {
	if len(b) < 4 {
		return 0, true
	}
	switch b[0] & 0xc0 {
	case 0x00:
		n = stunHeaderLen + int(binary.BigEndian.Uint16(b[2:4]))
	case 0x40:
		n = 4 + (int(binary.BigEndian.Uint16(b[2:4]))+3)&^3
	default:
		return 0, false
	}
	if len(b) < n {
		return 0, true
	}
	return n, true
}
