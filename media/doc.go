// Package media is the RTP plane of the SFU: packet caches for NACK
// responses, keyframe detection and requests, simulcast layer switching with
// sequence number, timestamp and VP8 picture ID rewriting, audio levels
// (RFC 6464) and active speaker detection, RTCP feedback (NACK, PLI, FIR,
// transport-wide congestion control) walked without allocating, and a
// send-side bandwidth estimator.
//
// It imports no other package of Switchboard and knows nothing of Matrix or
// configuration files: callers hand it plain Go values.
package media
