package sfu

import "errors"

// Errors returned by the SFU. Wrapped errors carry details; compare with
// errors.Is.
var (
	// ErrInvalidConfig means New was given a Config it cannot run with.
	ErrInvalidConfig = errors.New("sfu: invalid config")
	// ErrClosed means the SFU, conference or participant is closed.
	ErrClosed = errors.New("sfu: closed")
	// ErrTooManyConferences means Config.MaxConferences is reached.
	ErrTooManyConferences = errors.New("sfu: too many conferences on this node")
	// ErrConferenceFull means Config.MaxParticipantsPerConference is reached.
	ErrConferenceFull = errors.New("sfu: conference is full")
	// ErrTooManyTracks means a participant tried to publish more than
	// Config.MaxTracksPerParticipant tracks; the extra track is ignored.
	ErrTooManyTracks = errors.New("sfu: too many tracks for this participant")
	// ErrDuplicateParticipant means the participant ID is already in the
	// conference.
	ErrDuplicateParticipant = errors.New("sfu: participant already in conference")
	// ErrInvalidSDP means an offer or answer could not be applied.
	ErrInvalidSDP = errors.New("sfu: invalid session description")
	// ErrGlare means the client offered while a server offer was still
	// unanswered; see Participant.HandleOffer.
	ErrGlare = errors.New("sfu: offer collision, answer the pending server offer first")
	// ErrNoDataChannel means the client has opened no data channel yet.
	ErrNoDataChannel = errors.New("sfu: no open data channel")
	// ErrUnknownTrack means a subscription names a track nobody publishes.
	ErrUnknownTrack = errors.New("sfu: unknown track")
	// ErrICEFailed is the close reason of a participant whose ICE
	// connection failed and was not restarted in time.
	ErrICEFailed = errors.New("sfu: ICE connection failed")
	// ErrPeerClosed is the close reason of a participant whose client
	// closed the connection (DTLS close_notify) without leaving first.
	ErrPeerClosed = errors.New("sfu: connection closed by the client")
	// ErrLeft is the close reason of a participant closed by Close.
	ErrLeft = errors.New("sfu: participant left")
)
