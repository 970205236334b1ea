package sfu

import (
	"encoding/binary"
	"sync"

	"github.com/pion/interceptor"
)

// srOnlyFactory builds pion's receiver report interceptor wrapped in
// srOnly.
type srOnlyFactory struct{ interceptor.Factory }

// NewInterceptor implements interceptor.Factory.
func (f srOnlyFactory) NewInterceptor(id string) (interceptor.Interceptor, error) {
	i, err := f.Factory.NewInterceptor(id)
	if err != nil {
		return nil, err
	}
	return srOnly{i}, nil
}

// srOnly lets pion's receiver report interceptor see only the compound
// RTCP packets that carry a sender report (RFC 3550 section 6.4.1), the
// only packets it reads (for the LSR and DLSR fields of its reports). It
// parses every packet it sees with rtcp.Unmarshal, which allocates an
// object per acknowledged packet in transport-wide feedback: on a
// subscriber's feedback, about ten packets a second acknowledging every
// packet forwarded, that was an allocation per forwarded packet.
type srOnly struct{ interceptor.Interceptor }

// BindRTCPReader implements interceptor.Interceptor: packets without a
// sender report pass straight through; the others go through the wrapped
// interceptor's reader, fed from a one-packet replay.
func (s srOnly) BindRTCPReader(reader interceptor.RTCPReader) interceptor.RTCPReader {
	var (
		mu          sync.Mutex // one packet in the replay at a time
		pending     []byte
		pendingAttr interceptor.Attributes
	)
	replay := interceptor.RTCPReaderFunc(func(b []byte, _ interceptor.Attributes) (int, interceptor.Attributes, error) {
		return copy(b, pending), pendingAttr, nil
	})
	inner := s.Interceptor.BindRTCPReader(replay)
	return interceptor.RTCPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		n, attr, err := reader.Read(b, a)
		if err != nil || !hasSenderReport(b[:n]) {
			return n, attr, err
		}
		mu.Lock()
		defer mu.Unlock()
		pending, pendingAttr = b[:n], attr
		return inner.Read(b, attr)
	})
}

// hasSenderReport reports whether a compound RTCP packet holds a sender
// report (packet type 200). A malformed compound packet has none.
func hasSenderReport(b []byte) bool {
	for len(b) >= 4 {
		if b[1] == 200 {
			return true
		}
		size := (int(binary.BigEndian.Uint16(b[2:])) + 1) * 4
		if size > len(b) {
			return false
		}
		b = b[size:]
	}
	return false
}
