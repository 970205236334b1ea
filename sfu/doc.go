// Package sfu is the selective forwarding unit: conferences, participants,
// publish/subscribe of tracks, and per-subscriber bandwidth allocation and
// simulcast layer choice, on pion/webrtc.
//
// It is signalling-agnostic: it takes and returns SDP, ICE candidates and
// plain Go values, so that Matrix signalling (MSC3401/MSC3898) and other
// protocols are adapters over one core. It imports only the media package
// of Switchboard.
//
// Life of a participant: the signalling layer calls SFU.Join with the
// client's offer and a Handler and sends back the answer; client candidates
// go to Participant.AddICECandidate, server candidates come out of
// Handler.OnICECandidate. Once connected, the SFU offers the client the
// tracks it receives (Handler.OnOffer, answered with HandleAnswer) and
// describes them with Handler.OnTracks; the client renegotiates with
// HandleOffer (new or removed tracks, ICE restart), chooses what to receive
// with UpdateSubscriptions, and exchanges data channel messages with
// SendData and Handler.OnDataMessage. Close, an ICE failure or SFU.Close
// end it; Handler.OnClose says why.
//
// Media path: each received RTP stream (a track, or one simulcast layer of
// it) has a reader goroutine that parses each packet once, keeps it in a
// bounded cache and forwards it, on the same goroutine, to every subscriber
// that wants that layer: the subscriber's down track picks the layer,
// rewrites SSRC, sequence number, timestamp and VP8 picture ID, stamps a
// transport-wide sequence number and writes (a UDP write waits only while
// the kernel's socket buffer is full, an ICE-TCP write goes through a
// buffer that drops when full); on Linux a fan-out's
// datagrams leave in one sendmmsg(2) (batchconn_linux.go). Each subscriber
// has one send goroutine with a bounded queue (full means drop, never
// wait) that answers NACKs from the cache. A ticker per conference runs
// speaker detection and bandwidth allocation. RTCP is the SFU's own, one
// interceptor per PeerConnection (rxfeedback.go, txreports.go): NACKs,
// receiver reports and transport-wide feedback for what publishers send,
// sender reports for what subscribers receive, none of it allocating per
// packet.
//
// Key frames: a subscriber's video starts at a key frame. Its down track
// forwards nothing until pion has bound it and the description that did
// (the subscriber's answer) is applied; then it asks the publisher for a
// key frame (PLI, RFC 4585 section 6.3.1). Requests to one layer are throttled: a request
// already on its way answers later ones; after an answered request the
// next may follow keyframeGuard (350 ms, above browsers' 300 ms floor)
// later, else Config.KeyframeInterval later; subscribers' own PLIs go at
// most once per KeyframeInterval.
package sfu
