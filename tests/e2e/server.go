// Package e2e runs the real switchboard binary as a child process and talks
// to it over loopback, as an operator's clients would. Its tests check
// properties only a real process can show (an acknowledged event survives
// kill -9; SIGTERM ends long-polls and exits 0). The helpers here start the
// binary (internal/testbin provides it); the load tool in loadtest/sync and
// the call benchmark in bench/calls use them too.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Addrs are the listen addresses the server wrote to --addr-file.
type Addrs struct {
	Client     string `json:"client"`
	Federation string `json:"federation"`
	Metrics    string `json:"metrics"`
	TURNUDP    string `json:"turn_udp"`
	TURNTCP    string `json:"turn_tcp"`
	TURNTLS    string `json:"turn_tls"`
	MediaUDP   string `json:"media_udp"`
	MediaTCP   string `json:"media_tcp"`
}

// Options say how to start the server.
type Options struct {
	// Bin is the switchboard binary. Required.
	Bin string
	// DataDir is passed as --data-dir; it is created if missing. Required.
	DataDir string
	// Database, when set, is passed as --database (a postgres:// URL);
	// empty leaves the SQLite database in DataDir.
	Database string
	// Args are more flags for `serve`, after the ones Start sets.
	Args []string
	// Log receives the server's standard error (its log). Nil discards it.
	Log io.Writer
	// StartTimeout bounds the wait for --addr-file. Default 60 s.
	StartTimeout time.Duration
	// Wrap, when set, is a command the server runs under: the process
	// started is Wrap followed by the binary and its arguments (unshare,
	// to give the server a mount namespace of its own). The wrapper must
	// exec the binary, so that its process ID and signals are the
	// server's.
	Wrap []string
}

// Process is a running `switchboard serve --dev` child.
type Process struct {
	// Addrs are the bound addresses (every listener on 127.0.0.1, port 0).
	Addrs Addrs

	cmd     *exec.Cmd
	tmp     string
	done    chan struct{}
	waitErr error // set before done is closed
}

// Start runs `switchboard serve --dev` with every listener on a free
// loopback port and waits until the server has written --addr-file, that
// is, until it serves. The process is killed if ctx ends.
func Start(ctx context.Context, o Options) (*Process, error) {
	if o.Bin == "" || o.DataDir == "" {
		return nil, fmt.Errorf("%w: Bin and DataDir are required", ErrStart)
	}
	if o.StartTimeout <= 0 {
		o.StartTimeout = 60 * time.Second
	}
	if err := os.MkdirAll(o.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrStart, err)
	}
	tmp, err := os.MkdirTemp("", "switchboard-e2e-*")
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrStart, err)
	}
	addrFile := filepath.Join(tmp, "addrs.json")
	args := []string{
		"serve", "--dev",
		"--data-dir", o.DataDir,
		"--addr-file", addrFile,
		"--client-listen", "127.0.0.1:0",
		"--federation-listen", "127.0.0.1:0",
		"--metrics-listen", "127.0.0.1:0",
		"--turn-listen", "127.0.0.1:0",
		"--turn-tls-listen", "127.0.0.1:0",
		"--media-port", "0",
		"--media-tcp-port", "0",
	}
	if o.Database != "" {
		args = append(args, "--database", o.Database)
	}
	args = append(args, o.Args...)
	argv := append(append(append([]string{}, o.Wrap...), o.Bin), args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = o.DataDir
	cmd.Stdout = io.Discard // the --dev banner; the log is on stderr
	cmd.Stderr = o.Log
	if o.Log == nil {
		cmd.Stderr = io.Discard
	}
	if err := cmd.Start(); err != nil {
		os.RemoveAll(tmp)
		return nil, fmt.Errorf("%w: %w", ErrStart, err)
	}
	p := &Process{cmd: cmd, tmp: tmp, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		os.RemoveAll(tmp)
		close(p.done)
	}()
	go func() {
		select {
		case <-ctx.Done():
			_ = cmd.Process.Kill()
		case <-p.done:
		}
	}()

	deadline := time.NewTimer(o.StartTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		data, err := os.ReadFile(addrFile)
		if err == nil {
			if err := json.Unmarshal(data, &p.Addrs); err != nil {
				p.Kill()
				return nil, fmt.Errorf("%w: --addr-file %s: %w", ErrStart, data, err)
			}
			if p.Addrs.Client == "" {
				p.Kill()
				return nil, fmt.Errorf("%w: --addr-file has no client address: %s", ErrStart, data)
			}
			return p, nil
		}
		select {
		case <-p.done:
			return nil, fmt.Errorf("%w: exited before serving: %v", ErrStart, p.waitErr)
		case <-deadline.C:
			p.Kill()
			return nil, fmt.Errorf("%w: no --addr-file within %s", ErrStart, o.StartTimeout)
		case <-ctx.Done():
			p.Kill()
			return nil, fmt.Errorf("%w: %w", ErrStart, ctx.Err())
		case <-tick.C:
		}
	}
}

// ClientURL is the base URL of the client API.
func (p *Process) ClientURL() string { return "http://" + p.Addrs.Client }

// MetricsURL is the base URL of the metrics listener (/metrics, /health).
func (p *Process) MetricsURL() string { return "http://" + p.Addrs.Metrics }

// Pid is the child's process ID.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed once the process has exited and been reaped.
func (p *Process) Done() <-chan struct{} { return p.done }

// Kill sends SIGKILL (kill -9) and waits for the process to be reaped. It
// is harmless on a process that has already exited.
func (p *Process) Kill() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// Signal sends sig to the process.
func (p *Process) Signal(sig os.Signal) error {
	select {
	case <-p.done:
		return ErrExited
	default:
	}
	return p.cmd.Process.Signal(sig)
}

// Wait waits up to timeout for the process to exit and returns its exit
// code (-1 when a signal ended it). On timeout it returns ErrTimeout and
// leaves the process running.
func (p *Process) Wait(timeout time.Duration) (int, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode(), nil
	case <-t.C:
		return 0, fmt.Errorf("%w: no exit within %s", ErrTimeout, timeout)
	}
}

// Stop sends SIGTERM and waits up to timeout for a clean exit, killing the
// process if it does not come. It returns the exit code of a clean exit.
func (p *Process) Stop(timeout time.Duration) (int, error) {
	if err := p.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, ErrExited) {
		return 0, err
	}
	code, err := p.Wait(timeout)
	if err != nil {
		p.Kill()
	}
	return code, err
}

// CPUSeconds returns the user plus system CPU time the process has used so
// far, from /proc/<pid>/stat.
func (p *Process) CPUSeconds() (float64, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(p.Pid()) + "/stat")
	if err != nil {
		return 0, err
	}
	return ParseProcStatCPU(data)
}

// userHZ is the unit of the times in /proc/<pid>/stat: USER_HZ, which
// Linux fixes at 100 for every architecture in what it shows userspace.
const userHZ = 100

// ParseProcStatCPU reads utime and stime (fields 14 and 15, proc(5)) from
// the contents of /proc/<pid>/stat and returns their sum in seconds. The
// command name (field 2) is in parentheses and may itself hold spaces and
// parentheses, so fields are counted from the last ')'.
func ParseProcStatCPU(stat []byte) (float64, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("%w: no ')' after the command name", ErrProcStat)
	}
	f := strings.Fields(string(stat[i+1:]))
	// f[0] is field 3 (state), so field n is f[n-3].
	if len(f) < 13 {
		return 0, fmt.Errorf("%w: %d fields after the command name, want at least 13", ErrProcStat, len(f))
	}
	var ticks uint64
	for _, s := range f[11:13] {
		v, err := strconv.ParseUint(s, 10, 63)
		if err != nil {
			return 0, fmt.Errorf("%w: %q: %w", ErrProcStat, s, err)
		}
		ticks += v
	}
	return float64(ticks) / userHZ, nil
}

// LockedBuffer is a bytes.Buffer safe for a child process's output and a
// test reading it at the same time.
type LockedBuffer struct {
	mu  sync.Mutex // guards buf
	buf bytes.Buffer
}

func (b *LockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *LockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
