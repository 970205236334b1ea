package e2e

import "errors"

var (
	// ErrStart is a server that did not come up.
	ErrStart = errors.New("e2e: start")
	// ErrTimeout is a process that did not exit in time.
	ErrTimeout = errors.New("e2e: timeout")
	// ErrExited is a signal sent to a process that has already exited.
	ErrExited = errors.New("e2e: process has exited")
	// ErrProcStat is /proc/<pid>/stat content that cannot be read.
	ErrProcStat = errors.New("e2e: /proc stat")
)
