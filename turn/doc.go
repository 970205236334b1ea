// Package turn is the TURN relay (RFC 8656) of Switchboard, built on
// pion/turn: TURN REST credentials, a fail-closed peer policy (deny table),
// allocation quotas and metrics.
//
// The caller owns the sockets and the policy: the package opens no listener
// of its own and imports no other package of Switchboard.
package turn
