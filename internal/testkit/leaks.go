package testkit

import "go.uber.org/goleak"

// PionClosing is a goleak option for tests that close pion
// PeerConnections. When the far side closes first, pion closes its own
// PeerConnection on a goroutine of its own (on DTLS close_notify), and
// pion/sctp's Association.Abort then waits up to 200 ms for its ABORT
// chunk to be written: bounded, not a leak, but on a loaded machine it can
// outlive the end of a test.
var PionClosing = goleak.IgnoreAnyFunction("github.com/pion/sctp.(*Association).Abort")
