package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// The load tool runs the forwarder under test (the SFU, or the reference
// forwarder) in a child process, so that the child's CPU time and
// allocations are the forwarder's alone: the clients that publish and
// receive (pion PeerConnections doing SRTP, or plain UDP sockets) run in
// the parent. The two talk JSON lines over the child's stdin and stdout.

// childEnv names the environment variable that makes the binary (or the
// test binary) run as a child: "sfu" or "ref".
const childEnv = "SFUBENCH_CHILD"

// msg is one control message. Requests carry Seq, and the reply carries
// the same Seq; offers from the SFU carry Seq 0.
type msg struct {
	Op    string `json:"op"`
	Seq   int    `json:"seq,omitempty"`
	Err   string `json:"err,omitempty"`
	Conf  string `json:"conf,omitempty"`
	ID    string `json:"id,omitempty"`
	SDP   string `json:"sdp,omitempty"`
	Stats *stats `json:"stats,omitempty"`
	// Routes (ref_setup) and Ports (its reply) describe the reference
	// forwarder's sockets.
	Routes []route `json:"routes,omitempty"`
	Ports  []int   `json:"ports,omitempty"`
}

// route is one socket of the reference forwarder: the packets it receives
// whose SSRC is in SSRCs go to every address in Dests.
type route struct {
	SSRCs []uint32 `json:"ssrcs"`
	Dests []string `json:"dests"`
}

// stats is a child's snapshot of itself.
type stats struct {
	CPU        time.Duration `json:"cpu"` // user + system, all threads
	Mallocs    uint64        `json:"mallocs"`
	NumGC      uint32        `json:"num_gc"`
	Forwarded  uint64        `json:"forwarded"` // packets written to subscribers, first sends
	Resent     uint64        `json:"resent"`    // NACK retransmissions, not in Forwarded
	Dropped    uint64        `json:"dropped"`   // packets dropped on full queues
	Goroutines int           `json:"goroutines"`
	// Heap is the heap in use after a collection ("mem" reply only).
	Heap uint64 `json:"heap,omitempty"`
	// Baseline is the goroutine count before the forwarder started
	// (close reply only).
	Baseline int `json:"baseline,omitempty"`
}

// processCPU returns this process's user plus system CPU time.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// child is the parent's handle on a child process.
type child struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	wmu sync.Mutex
	enc *json.Encoder

	mu      sync.Mutex
	seq     int
	waiting map[int]chan msg
	// onOffer receives server offers (Seq 0, Op "offer").
	onOffer func(msg)
	done    chan struct{}
	readErr error
}

// startChild runs this executable again as a child of the given mode.
func startChild(mode string, onOffer func(msg)) (*child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), childEnv+"="+mode)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &child{cmd: cmd, in: in, enc: json.NewEncoder(in), waiting: map[int]chan msg{},
		onOffer: onOffer, done: make(chan struct{})}
	go c.read(out)
	return c, nil
}

func (c *child) read(out io.Reader) {
	defer close(c.done)
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var m msg
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			c.readErr = fmt.Errorf("child sent %q: %w", sc.Text(), err)
			break
		}
		if m.Seq == 0 {
			if m.Op == "offer" && c.onOffer != nil {
				c.onOffer(m)
			}
			continue
		}
		c.mu.Lock()
		ch := c.waiting[m.Seq]
		delete(c.waiting, m.Seq)
		c.mu.Unlock()
		if ch != nil {
			ch <- m
		}
	}
	c.mu.Lock()
	for seq, ch := range c.waiting {
		close(ch)
		delete(c.waiting, seq)
	}
	c.mu.Unlock()
}

var errChildGone = errors.New("sfubench: child process gone")

// call sends a request and waits for its reply.
func (c *child) call(m msg) (msg, error) {
	ch := make(chan msg, 1)
	c.mu.Lock()
	c.seq++
	m.Seq = c.seq
	c.waiting[m.Seq] = ch
	c.mu.Unlock()
	if err := c.send(m); err != nil {
		return msg{}, err
	}
	select {
	case r, ok := <-ch:
		if !ok {
			return msg{}, errChildGone
		}
		if r.Err != "" {
			return r, errors.New(r.Err)
		}
		return r, nil
	case <-time.After(60 * time.Second):
		return msg{}, fmt.Errorf("sfubench: child did not answer %s", m.Op)
	}
}

// send sends a message that has no reply.
func (c *child) send(m msg) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.enc.Encode(m)
}

// stats asks the child for a snapshot.
func (c *child) stats() (stats, error) {
	r, err := c.call(msg{Op: "stats"})
	if err != nil {
		return stats{}, err
	}
	if r.Stats == nil {
		return stats{}, errors.New("sfubench: stats reply without stats")
	}
	return *r.Stats, nil
}

// heap asks the child for its heap in use after a garbage collection
// (outside measurement windows: the collection costs CPU).
func (c *child) heap() (uint64, error) {
	r, err := c.call(msg{Op: "mem"})
	if err != nil {
		return 0, err
	}
	if r.Stats == nil {
		return 0, errors.New("sfubench: mem reply without stats")
	}
	return r.Stats.Heap, nil
}

// close asks the child to shut down and waits for it; the reply carries
// its goroutine count after shutdown.
func (c *child) close() (stats, error) {
	r, err := c.call(msg{Op: "close"})
	_ = c.in.Close()
	werr := c.cmd.Wait()
	<-c.done
	if err != nil {
		return stats{}, err
	}
	if werr != nil {
		return stats{}, werr
	}
	if r.Stats == nil {
		return stats{}, errors.New("sfubench: close reply without stats")
	}
	return *r.Stats, nil
}

// childIO is the child's side of the pipe.
type childIO struct {
	wmu sync.Mutex
	enc *json.Encoder
}

func (c *childIO) send(m msg) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.enc.Encode(m)
}

// runChild serves requests on stdin until "close" or EOF, handing each to
// handle on its own goroutine (a Join waits for ICE gathering).
func runChild(mode string) int {
	io := &childIO{enc: json.NewEncoder(os.Stdout)}
	baseline := runtime.NumGoroutine()
	if dir := os.Getenv(profileEnv); dir != "" {
		stop, err := startProfiles(dir, mode)
		if err != nil {
			fmt.Fprintln(os.Stderr, "sfubench child:", err)
			return 1
		}
		defer stop()
	}
	var srv childServer
	var err error
	switch mode {
	case "sfu":
		srv, err = newSFUChild(io)
	case "ref":
		srv = newRefChild()
	default:
		err = fmt.Errorf("unknown child mode %q", mode)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "sfubench child:", err)
		return 1
	}
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	var wg sync.WaitGroup
	for sc.Scan() {
		var m msg
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			fmt.Fprintln(os.Stderr, "sfubench child: bad request:", err)
			return 1
		}
		if m.Op == "close" {
			wg.Wait()
			srv.close()
			io.send(msg{Op: "closed", Seq: m.Seq,
				Stats: &stats{Goroutines: goroutinesSettled(baseline), Baseline: baseline}})
			return 0
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := srv.handle(m)
			if m.Seq != 0 {
				r.Seq = m.Seq
				io.send(r)
			}
		}()
	}
	wg.Wait()
	srv.close()
	return 0
}

// profileEnv names a directory where children write a CPU profile and an
// allocation profile of their whole run (cpu-<mode>-<pid>.pprof,
// allocs-<mode>-<pid>.pprof), for `go tool pprof`.
const profileEnv = "SFUBENCH_PROFILE"

func startProfiles(dir, mode string) (func(), error) {
	name := func(kind string) string {
		return filepath.Join(dir, fmt.Sprintf("%s-%s-%d.pprof", kind, mode, os.Getpid()))
	}
	// SFUBENCH_MEMPROFILERATE=1 records every allocation (the per-packet
	// ones are small and the default rate misses most of them), at a
	// cost in CPU that skews the CPU profile and the figures.
	if r, err := strconv.Atoi(os.Getenv("SFUBENCH_MEMPROFILERATE")); err == nil && r > 0 {
		runtime.MemProfileRate = r
	}
	cpu, err := os.Create(name("cpu"))
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(cpu); err != nil {
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		_ = cpu.Close()
		runtime.GC() // the profile shows allocations up to the last GC
		if f, err := os.Create(name("allocs")); err == nil {
			_ = pprof.Lookup("allocs").WriteTo(f, 0)
			_ = f.Close()
		}
	}, nil
}

// goroutinesSettled polls the goroutine count until it is back at
// baseline or has stopped falling for a second (5 s at most), and returns
// it.
func goroutinesSettled(baseline int) int {
	deadline := time.Now().Add(5 * time.Second)
	last, since := runtime.NumGoroutine(), time.Now()
	for time.Now().Before(deadline) && last > baseline && time.Since(since) < time.Second {
		time.Sleep(20 * time.Millisecond)
		if n := runtime.NumGoroutine(); n != last {
			last, since = n, time.Now()
		}
	}
	return last
}

// childServer is what a child mode implements.
type childServer interface {
	handle(msg) msg
	close()
}

// errMsg is a reply carrying err.
func errMsg(err error) msg { return msg{Op: "error", Err: err.Error()} }
