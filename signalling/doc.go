// Package signalling carries calls over Matrix: 1:1 VoIP (m.call.* room
// events) and group calls through the SFU focus (MSC3401 membership, MSC3898
// to-device signalling).
package signalling
