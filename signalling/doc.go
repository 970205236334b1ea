// Package signalling carries calls over Matrix: 1:1 VoIP (m.call.* room
// events) and group calls through the SFU focus (MSC3401 membership, MSC3898
// to-device signalling).
//
// README.md in this directory is the client-facing protocol: the focus's
// address (@switchboard:<server_name>, device SFU by default), the m.call
// and m.call.member state events it checks, the to-device m.call.invite it
// answers, and the data-channel messages that follow.
package signalling
