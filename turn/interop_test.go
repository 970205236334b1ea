package turn

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/switchboard-chat/switchboard/internal/testkit"
)

// coturnTool finds one of coturn's client tools or fails the test, naming
// the Debian package to install.
func coturnTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found: the interop tests need coturn's client tools (Debian package coturn: apt-get install -y coturn): %v", name, err)
	}
	return p
}

// freeUDPPort returns a UDP port on 127.0.0.1 that was free a moment ago.
func freeUDPPort(t testing.TB) int {
	t.Helper()
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// toolSocketBuffer is what the tests give the UDP sockets of coturn's
// tools (see procsock_linux_test.go): as much as the relay's listener.
const toolSocketBuffer = listenerSocketBuffer

// coturnPeer is a running turnutils_peer.
type coturnPeer struct {
	port, pid int
}

// startCoturnPeer runs turnutils_peer (a UDP echo server) on 127.0.0.1 and
// enlarges its socket buffers.
func startCoturnPeer(t *testing.T) coturnPeer {
	t.Helper()
	bin := coturnTool(t, "turnutils_peer")
	port := freeUDPPort(t)
	cmd := exec.Command(bin, "-L", "127.0.0.1", "-p", strconv.Itoa(port))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	// Wait until the echo server answers.
	c, err := net.Dial("udp4", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 64)
	testkit.Eventually(t, 10*time.Second, "turnutils_peer to echo", func() bool {
		_, _ = c.Write([]byte("ping"))
		_ = c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		n, err := c.Read(buf)
		return err == nil && string(buf[:n]) == "ping"
	})
	if n, err := enlargeUDPBuffers(cmd.Process.Pid, toolSocketBuffer); err != nil || n == 0 {
		t.Logf("turnutils_peer keeps its own socket buffers (%d enlarged: %v); on a busy machine it may drop packets itself", n, err)
	}
	return coturnPeer{port: port, pid: cmd.Process.Pid}
}

var (
	uclientLost = regexp.MustCompile(`Total lost packets (\d+) \(([0-9.]+)%\), total send dropped (\d+)`)
	uclientMsgs = regexp.MustCompile(`start_mclient: tot_send_msgs=(\d+), tot_recv_msgs=(\d+)`)
	uclientRTT  = regexp.MustCompile(`Average round trip delay ([0-9.]+) ms`)
)

// uclientResult is what turnutils_uclient reports at the end of a run,
// and the datagrams the kernel dropped at full receive queues meanwhile,
// by process ("relay" is this test binary).
type uclientResult struct {
	sent, received, lost, dropped int
	rttMs                         float64
	output                        string
	kernelDrops                   map[string]uint64
}

func parseUclient(out string) (uclientResult, error) {
	r := uclientResult{output: out}
	m := uclientMsgs.FindAllStringSubmatch(out, -1)
	l := uclientLost.FindStringSubmatch(out)
	if len(m) == 0 || l == nil {
		return r, fmt.Errorf("no totals in turnutils_uclient output")
	}
	r.sent, _ = strconv.Atoi(m[len(m)-1][1])
	r.received, _ = strconv.Atoi(m[len(m)-1][2])
	r.lost, _ = strconv.Atoi(l[1])
	r.dropped, _ = strconv.Atoi(l[3])
	if rt := uclientRTT.FindStringSubmatch(out); rt != nil {
		r.rttMs, _ = strconv.ParseFloat(rt[1], 64)
	}
	return r, nil
}

// runUclient runs turnutils_uclient to the end. While it runs, the UDP
// sockets it opens get the same buffers as the peer's, and the kernel's
// drop counters of the relay's, the peer's and the client's sockets are
// followed, so a loss can be put where it happened.
func runUclient(t *testing.T, peer coturnPeer, args ...string) uclientResult {
	t.Helper()
	bin := coturnTool(t, "turnutils_uclient")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	watch := newDropWatch(map[string]int{"relay": os.Getpid(), "turnutils_peer": peer.pid, "turnutils_uclient": cmd.Process.Pid})
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var err error
	var (
		enlarged   int
		enlargeErr error
	)
wait:
	for {
		select {
		case err = <-exited:
			break wait
		case <-tick.C:
			n, e := enlargeUDPBuffers(cmd.Process.Pid, toolSocketBuffer)
			enlarged += n
			if e != nil && enlargeErr == nil {
				enlargeErr = e
			}
			watch.sample()
		}
	}
	watch.sample()
	if enlargeErr != nil {
		t.Logf("turnutils_uclient kept its own socket buffers (%d enlarged): %v", enlarged, enlargeErr)
	}
	if err != nil {
		t.Fatalf("turnutils_uclient %v: %v\n%s", args, err, tail(out.String(), 3000))
	}
	r, perr := parseUclient(out.String())
	if perr != nil {
		t.Fatalf("turnutils_uclient %v: %v\n%s", args, perr, tail(out.String(), 3000))
	}
	r.kernelDrops = watch.totals()
	return r
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

// TestCoturnInterop runs coturn's turnutils_uclient (20 clients × 500
// packets, REST credentials from the shared secret with -W) against the
// relay, with coturn's turnutils_peer as the peer: every packet must come
// back. uclient asks for credentials valid for a day, so this relay allows
// 25 h; TestCoturnDefaultTTLRefused checks the default refuses them.
func TestCoturnInterop(t *testing.T) {
	checkLeaks(t)
	h := startHarness(t, func(c *Config) {
		c.MaxTTL = 25 * time.Hour
		c.UserQuota = 100
	})
	peer := startCoturnPeer(t)
	modes := []struct {
		name  string
		flags []string
	}{
		{"udp channel data", nil},
		{"udp send indications", []string{"-s"}},
		{"tcp control", []string{"-t"}},
	}
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			port := h.udpAddr.Port
			if len(mode.flags) > 0 && mode.flags[0] == "-t" {
				port = h.tcpAddr.Port
			}
			args := append([]string{}, mode.flags...)
			args = append(args, "-W", testSecret, "-u", "interop", "-e", "127.0.0.1", "-r", strconv.Itoa(peer.port),
				"-m", "20", "-n", "500", "-l", "200", "-z", "5", "-c", "-p", strconv.Itoa(port), "127.0.0.1")
			toPeer0 := h.metric("switchboard_turn_relayed_packets_total", "transport", "udp", "direction", "to_peer")
			toClient0 := h.metric("switchboard_turn_relayed_packets_total", "transport", "udp", "direction", "to_client")
			bwDrop0 := h.metric("switchboard_turn_bandwidth_dropped_packets_total")
			r := runUclient(t, peer, args...)
			toPeer := h.metric("switchboard_turn_relayed_packets_total", "transport", "udp", "direction", "to_peer") - toPeer0
			toClient := h.metric("switchboard_turn_relayed_packets_total", "transport", "udp", "direction", "to_client") - toClient0
			bwDrop := h.metric("switchboard_turn_bandwidth_dropped_packets_total") - bwDrop0
			summary := fmt.Sprintf("%s: sent %d received %d lost %d send-dropped %d mean rtt %.3f ms; "+
				"relay relayed %v to the peer and %v to the client, dropped %v over the bandwidth cap; "+
				"kernel receive-queue drops: %v",
				mode.name, r.sent, r.received, r.lost, r.dropped, r.rttMs, toPeer, toClient, bwDrop, r.kernelDrops)
			t.Log(summary)
			if r.sent != 20*500 || r.received != r.sent || r.lost != 0 || r.dropped != 0 {
				t.Fatalf("loss through the relay: %s\n%s", summary, tail(r.output, 3000))
			}
		})
	}
}

// TestCoturnDefaultTTLRefused: with the default 1 h maximum TTL, uclient's
// day-long REST credentials are refused with 401 and nothing is relayed.
func TestCoturnDefaultTTLRefused(t *testing.T) {
	checkLeaks(t)
	h := startHarness(t, nil)
	peer := startCoturnPeer(t)
	bin := coturnTool(t, "turnutils_uclient")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, bin, "-W", testSecret, "-u", "interop", "-e", "127.0.0.1",
		"-r", strconv.Itoa(peer.port), "-m", "1", "-n", "5", "-c", "-p", strconv.Itoa(h.udpAddr.Port), "127.0.0.1").CombinedOutput()
	if got := h.metric("switchboard_turn_auth_failures_total", "reason", authTooLong); got < 1 {
		t.Fatalf("no ttl_too_long auth failure recorded; uclient said:\n%s", tail(string(out), 2000))
	}
	if got := h.metric("switchboard_turn_relayed_packets_total", "transport", "udp", "direction", "to_peer"); got != 0 {
		t.Fatalf("relayed %v packets with refused credentials", got)
	}
	if h.srv.AllocationCount() != 0 {
		t.Fatal("allocation created with refused credentials")
	}
}

// TestCoturnInteropTLS: turnutils_uclient over TLS (-S) to a TLS listener,
// as on port 5349.
func TestCoturnInteropTLS(t *testing.T) {
	checkLeaks(t)
	ln, err := tls.Listen("tcp4", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	cfg := baseConfig()
	cfg.Logger = discardLogger()
	cfg.MaxTTL = 25 * time.Hour
	cfg.UserQuota = 100
	srv, err := New(cfg, nil, []net.Listener{ln})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	peer := startCoturnPeer(t)
	r := runUclient(t, peer, "-t", "-S", "-W", testSecret, "-u", "interop", "-e", "127.0.0.1", "-r", strconv.Itoa(peer.port),
		"-m", "5", "-n", "200", "-l", "200", "-z", "5", "-c", "-p", strconv.Itoa(ln.Addr().(*net.TCPAddr).Port), "127.0.0.1")
	t.Logf("tls: sent %d received %d lost %d mean rtt %.3f ms", r.sent, r.received, r.lost, r.rttMs)
	if r.sent != 5*200 || r.received != r.sent || r.lost != 0 {
		t.Fatalf("loss over TLS: sent %d received %d lost %d\n%s", r.sent, r.received, r.lost, tail(r.output, 3000))
	}
}
