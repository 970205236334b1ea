//go:build !linux

package turn

import (
	"errors"
	"syscall"
)

var errNoProcSockets = errors.New("needs Linux (pidfd_getfd, /proc/net/udp)")

func enlargeUDPBuffers(int, int) (int, error) { return 0, errNoProcSockets }

type dropWatch struct{ pids map[string]int }

func newDropWatch(pids map[string]int) *dropWatch { return &dropWatch{pids: pids} }
func (w *dropWatch) sample()                      {}
func (w *dropWatch) totals() map[string]uint64    { return nil }

func socketBufferOf(syscall.Conn) (int, error) { return 0, errNoProcSockets }

func socketBufferOfFD(int) (int, error) { return 0, errNoProcSockets }
