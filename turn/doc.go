// Package turn is the TURN relay (RFC 8656) of Switchboard, built on
// pion/turn: TURN REST credentials, a fail-closed peer policy (deny table),
// allocation quotas and metrics.
//
// The caller owns the sockets and the policy: the package opens no listener
// of its own and imports no other package of Switchboard. New takes UDP
// packet conns (port 3478) and TCP or TLS listeners (3478, 5349) and serves
// them until Close.
//
// # How it sits on pion
//
// pion/turn v5.1.1 runs the protocol: allocations, permissions, channels,
// refreshes, nonces, and RFC 6062 TCP relaying (Connect, ConnectionBind,
// ConnectionAttempt). This package adds, without forking pion:
//
//   - Credentials (auth.go): long-term credentials (RFC 8489 §9.2) from
//     TURN REST usernames "<unix-expiry>:<user_id>" with the password
//     base64(HMAC-SHA1(secret, username)), as the homeserver's
//     /voip/turnServer hands out, plus optional static users.
//   - A request inspector (inspect.go) wrapped around the client sockets. It
//     answers 401 for bad realms, usernames, expiries and HMACs (pion
//     v5.1.1 would say 400), 403 for CreatePermission, ChannelBind and
//     Connect toward refused peers, and drops unauthenticated Binding
//     requests over a per-IP rate. Stale nonces are left to pion (438).
//   - The peer policy (policy.go): Classify and Policy.Check, table-driven
//     and allocation-free over net/netip, refusing loopback, private,
//     CGNAT, link-local, multicast, broadcast, reserved, documentation and
//     other special-purpose addresses, their v4-mapped, 6to4 and NAT64
//     forms, and the server's own listener addresses, unless the operator's
//     allow-list admits them; the operator's deny-list always wins.
//   - Relay sockets (relay.go) handed to pion by a RelayAddressGenerator:
//     they check the policy again on every datagram and connection, cap
//     bandwidth per allocation, count traffic and release quota on close.
//   - A ChannelData fast path (fastpath.go) that relays ChannelData in both
//     directions from a mirror of pion's channel bindings, because pion
//     allocates on every packet of its own ChannelData path.
//   - On Linux, one relay poller (poller_linux.go) instead of a goroutine
//     per socket: an epoll set over every UDP relay socket and UDP client
//     listener, waited on by one goroutine blocked in epoll_wait (as
//     coturn's event loops wait), read with recvmmsg and answered with one
//     sendmmsg per round. A burst of datagrams costs one thread wake-up,
//     not one per datagram and socket, and no trip through Go's scheduler.
//     Relay sockets are opened outside Go's netpoller for it, and UDP
//     client listeners are taken out of it; pion still sees a
//     net.PacketConn per allocation and gets, through a queue, what the
//     poller does not relay itself (STUN messages, Data indications, data
//     for clients on TCP/TLS). Nothing on the per-datagram path allocates.
//   - Quotas per user and in total, answered with 486 through pion's
//     QuotaHandler, and switchboard_turn_* Prometheus metrics.
//   - Socket buffers (sockbuf.go): client-facing UDP listeners get 4 MiB
//     receive and send buffers, forced past net.core.rmem_max/wmem_max
//     with SO_RCVBUFFORCE/SO_SNDBUFFORCE when the process has
//     CAP_NET_ADMIN, and New warns when it could not get them: with the
//     stock 208 KiB a busy host drops client packets at the listener.
package turn
