package main

import "errors"

var (
	// ErrScrape is a /metrics page that could not be read.
	ErrScrape = errors.New("soak: metrics scrape failed")
	// ErrServerExit is a server that did not exit cleanly on SIGTERM.
	ErrServerExit = errors.New("soak: server exit")
	// ErrUndelivered is an acknowledged message a room member never saw.
	ErrUndelivered = errors.New("soak: acknowledged message not delivered")
	// ErrCall is a 1:1 or group call that did not carry media.
	ErrCall = errors.New("soak: call failed")
)
