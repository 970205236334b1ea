package cluster

import "errors"

var (
	// ErrConfig is returned by New for a configuration it cannot run.
	ErrConfig = errors.New("cluster: bad configuration")
	// ErrBadMessage is returned by decodeWake for a message that is not a
	// wake-up of ours.
	ErrBadMessage = errors.New("cluster: bad wake-up message")
)
