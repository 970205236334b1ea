package turn

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// This file lets the interop tests see and shape the sockets of coturn's
// tools, which they cannot configure themselves. turnutils_peer asks for
// its UDP buffer with SO_RCVBUF, which the kernel caps at
// net.core.rmem_max: 208 KiB on a stock Debian, about 75 ms of the test's
// 4,000 datagrams a second. On a busy 2-core machine the peer is
// descheduled for longer than that and the kernel drops packets at its
// socket, which is loss in the test rig, not in the relay. The relay's own
// listener forces 4 MiB (sockbuf.go); enlargeUDPBuffers gives the tools'
// sockets the same, so the zero-loss assertion measures the relay.

// enlargeUDPBuffers sets SO_RCVBUFFORCE and SO_SNDBUFFORCE to size on every
// UDP socket of process pid, through pidfd_getfd(2) (Linux 5.6; needs the
// right to ptrace pid, as root has). It returns how many sockets it
// enlarged, or an error saying why it could not.
func enlargeUDPBuffers(pid, size int) (int, error) {
	pidfd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return 0, nil // gone: nothing left to enlarge
	}
	if err != nil {
		return 0, fmt.Errorf("pidfd_open: %w", err)
	}
	defer unix.Close(pidfd)
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	done := 0
	for _, e := range ents {
		link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, e.Name()))
		if err != nil || !strings.HasPrefix(link, "socket:") {
			continue
		}
		target, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		fd, err := unix.PidfdGetfd(pidfd, target, 0)
		if errors.Is(err, unix.EBADF) {
			continue // closed since the directory was read
		}
		if err != nil {
			return done, fmt.Errorf("pidfd_getfd: %w", err)
		}
		if typ, _ := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE); typ == unix.SOCK_DGRAM {
			if rb, _ := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF); rb/2 < size {
				err1 := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, size)
				err2 := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, size)
				if err1 != nil || err2 != nil {
					unix.Close(fd)
					return done, fmt.Errorf("SO_RCVBUFFORCE: %v, SO_SNDBUFFORCE: %v", err1, err2)
				}
				done++
			}
		}
		unix.Close(fd)
	}
	return done, nil
}

// socketInodes returns the inodes of the sockets process pid holds.
func socketInodes(pid int) []uint64 {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []uint64
	for _, e := range ents {
		link, err := os.Readlink(dir + "/" + e.Name())
		if err != nil || !strings.HasPrefix(link, "socket:[") {
			continue
		}
		if ino, err := strconv.ParseUint(strings.TrimSuffix(link[len("socket:["):], "]"), 10, 64); err == nil {
			out = append(out, ino)
		}
	}
	return out
}

// udpDropsByInode reads the kernel's drop counters (datagrams discarded
// because a receive queue was full) of every IPv4 UDP socket, by inode,
// from /proc/net/udp.
func udpDropsByInode() (map[uint64]uint64, error) {
	f, err := os.Open("/proc/net/udp")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := make(map[uint64]uint64)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 13 {
			continue
		}
		ino, err1 := strconv.ParseUint(fields[9], 10, 64)
		d, err2 := strconv.ParseUint(fields[12], 10, 64)
		if err1 != nil || err2 != nil {
			continue // the header line
		}
		out[ino] = d
	}
	return out, sc.Err()
}

// dropWatch follows the UDP drop counters of the sockets of a few
// processes while they come and go, so that loss can be put where it
// happened: in the relay, in the peer or in the client.
type dropWatch struct {
	pids map[string]int

	mu    sync.Mutex
	owner map[uint64]string // guarded by mu
	drops map[uint64]uint64 // highest count seen, by inode; guarded by mu
}

func newDropWatch(pids map[string]int) *dropWatch {
	return &dropWatch{pids: pids, owner: map[uint64]string{}, drops: map[uint64]uint64{}}
}

// sample records the current counters.
func (w *dropWatch) sample() {
	all, err := udpDropsByInode()
	if err != nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for name, pid := range w.pids {
		for _, ino := range socketInodes(pid) {
			if d, ok := all[ino]; ok {
				w.owner[ino] = name
				w.drops[ino] = max(w.drops[ino], d)
			}
		}
	}
}

// totals returns the drops seen per process name.
func (w *dropWatch) totals() map[string]uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[string]uint64, len(w.pids))
	for name := range w.pids {
		out[name] = 0
	}
	for ino, d := range w.drops {
		out[w.owner[ino]] += d
	}
	return out
}

// socketBufferOf reads SO_RCVBUF of a UDP socket of ours, in the units
// it was asked for (Linux reports twice that).
func socketBufferOf(c syscall.Conn) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var v int
	var gerr error
	if err := rc.Control(func(fd uintptr) {
		v, gerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF)
	}); err != nil {
		return 0, err
	}
	return v / 2, gerr
}

// socketBufferOfFD is socketBufferOf for a bare descriptor.
func socketBufferOfFD(fd int) (int, error) {
	v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF)
	return v / 2, err
}
