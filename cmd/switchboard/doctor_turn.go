package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	pionturn "github.com/pion/turn/v5"
)

// checkTURN allocates two relays on our own TURN server with TURN REST
// credentials made from the shared secret (as /voip/turnServer makes
// them) and sends a datagram each way between the two relayed addresses:
// the credentials are accepted, the advertised relay address is right, and
// the relay ports pass traffic.
func (d *doctorRun) checkTURN(ctx context.Context) {
	const name = "turn relay"
	c := d.cfg
	if !c.TURN.Enabled {
		d.note(name, "TURN is off (turn.enabled: false): calls between networks that block each other will fail")
		return
	}
	secret := c.TURN.SharedSecret
	if secret == "" {
		data, err := os.ReadFile(filepath.Join(c.DataDir, turnSecretName))
		if err != nil {
			d.problem(name, "no TURN shared secret: "+err.Error(), "set turn.shared_secret, or start serve once to generate it in data_dir")
			return
		}
		secret = strings.TrimSpace(string(data))
	}
	user, pass := turnREST(secret, "switchboard-doctor", time.Now().Add(10*time.Minute))
	server := localAddr(c.TURN.Listen)
	ctx, cancel := context.WithTimeout(ctx, 3*d.env.timeout)
	defer cancel()

	var relays [2]net.PacketConn
	for i := range relays {
		rc, closeFn, err := turnAllocate(ctx, server, c.TURN.Realm, user, pass)
		if err != nil {
			d.problem(name, fmt.Sprintf("allocation on %s refused: %v", server, err),
				"serve and this check must share turn.shared_secret (or data_dir); the relay's log says why it refused")
			return
		}
		defer closeFn()
		relays[i] = rc
	}
	want := c.TURN.RelayIP
	got := relays[0].LocalAddr().(*net.UDPAddr)
	if want != "" && !got.IP.Equal(net.ParseIP(want)) {
		d.problem(name, fmt.Sprintf("relayed address %s, but turn.relay_ip/public_ip is %s", got, want), "restart serve after changing public_ip")
		return
	}
	if err := relayRoundTrip(ctx, relays[0], relays[1]); err != nil {
		d.problem(name, fmt.Sprintf("credentials accepted, but no relayed round trip between %s and %s: %v", relays[0].LocalAddr(), relays[1].LocalAddr(), err),
			fmt.Sprintf("the relayed address must lead back to this machine: check public_ip (or turn.relay_ip), and open udp %d-%d (turn.relay_port_min-max) in the firewall", c.TURN.RelayPortMin, c.TURN.RelayPortMax))
		return
	}
	d.ok(name, fmt.Sprintf("TURN REST credentials accepted on %s; relayed round trip %s <-> %s", server, relays[0].LocalAddr(), relays[1].LocalAddr()))
}

// turnREST makes a TURN REST username ("expiry:user") and password,
// base64(HMAC-SHA1(secret, username)), as /voip/turnServer does.
func turnREST(secret, user string, expires time.Time) (string, string) {
	name := strconv.FormatInt(expires.Unix(), 10) + ":" + user
	m := hmac.New(sha1.New, []byte(secret))
	m.Write([]byte(name))
	return name, base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// turnAllocate makes one UDP allocation (RFC 8656 §7) with pion's client.
func turnAllocate(ctx context.Context, server, realm, user, pass string) (net.PacketConn, func(), error) {
	conn, err := net.ListenPacket("udp4", ":0")
	if err != nil {
		return nil, nil, err
	}
	cl, err := pionturn.NewClient(&pionturn.ClientConfig{
		STUNServerAddr: server, TURNServerAddr: server,
		Username: user, Password: pass, Realm: realm,
		Conn: conn, RTO: 300 * time.Millisecond,
	})
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	if err := cl.Listen(); err != nil {
		cl.Close()
		conn.Close()
		return nil, nil, err
	}
	rc, err := cl.AllocateWithContext(ctx)
	if err != nil {
		cl.Close()
		conn.Close()
		return nil, nil, err
	}
	return rc, func() { rc.Close(); cl.Close(); conn.Close() }, nil
}

// relayRoundTrip sends a datagram from a's relay to b's and back until
// both have arrived (the first may meet a missing permission), or ctx ends.
func relayRoundTrip(ctx context.Context, a, b net.PacketConn) error {
	arrived := make(chan string, 2)
	recv := func(pc net.PacketConn, want string) {
		buf := make([]byte, 1500)
		for {
			_ = pc.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			n, _, err := pc.ReadFrom(buf)
			if err == nil && string(buf[:n]) == want {
				arrived <- want
				return
			}
			var ne net.Error
			if ctx.Err() != nil || (err != nil && !(errors.As(err, &ne) && ne.Timeout())) {
				return
			}
		}
	}
	go recv(b, "a->b")
	go recv(a, "b->a")
	seen := map[string]bool{}
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		if !seen["a->b"] {
			_, _ = a.WriteTo([]byte("a->b"), b.LocalAddr())
		}
		if !seen["b->a"] {
			_, _ = b.WriteTo([]byte("b->a"), a.LocalAddr())
		}
		select {
		case m := <-arrived:
			seen[m] = true
			if len(seen) == 2 {
				return nil
			}
		case <-tick.C:
		case <-ctx.Done():
			missing := "a->b"
			if seen["a->b"] {
				missing = "b->a"
			}
			return fmt.Errorf("%s did not arrive", missing)
		}
	}
}
