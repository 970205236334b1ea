// Package sfu is the selective forwarding unit: conferences, participants,
// publish/subscribe of tracks, and per-subscriber bandwidth allocation and
// simulcast layer choice, on pion/webrtc.
//
// It is signalling-agnostic: it takes and returns SDP, ICE candidates and
// plain Go values, so that Matrix signalling and other protocols are adapters
// over one core. It imports only the media package of Switchboard.
package sfu
