// Command turnbench runs Switchboard's turn package standalone, for the
// benchmark in run.sh (which compares it with coturn under coturn's own
// load generator). It listens on UDP and TCP, relays on the given IP and
// serves until SIGINT or SIGTERM.
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/switchboard-chat/switchboard/turn"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "turnbench:", err)
		os.Exit(1)
	}
}

func run() error {
	listen := flag.String("listen", "127.0.0.1:3478", "UDP and TCP listen address")
	relayIP := flag.String("relay-ip", "127.0.0.1", "advertised relay IP")
	bind := flag.String("relay-bind", "127.0.0.1", "relay bind address")
	realm := flag.String("realm", "bench.test", "realm")
	secret := flag.String("secret", "bench-secret", "TURN REST shared secret")
	maxTTL := flag.Duration("max-ttl", 25*time.Hour, "maximum REST credential TTL (turnutils_uclient asks for a day)")
	allow := flag.String("allow", "127.0.0.1/32", "comma-separated allow-list")
	userQuota := flag.Int("user-quota", 1000, "allocations per user")
	minPort := flag.Uint("min-port", 49152, "lowest relay port")
	maxPort := flag.Uint("max-port", 65535, "highest relay port")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile here")
	verbose := flag.Bool("v", false, "debug logs")
	flag.Parse()

	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	pc, err := net.ListenPacket("udp4", *listen)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp4", *listen)
	if err != nil {
		return err
	}
	srv, err := turn.New(turn.Config{
		Realm:            *realm,
		SharedSecret:     *secret,
		MaxTTL:           *maxTTL,
		RelayIP:          net.ParseIP(*relayIP),
		RelayBindAddress: *bind,
		RelayPortMin:     uint16(*minPort),
		RelayPortMax:     uint16(*maxPort),
		AllowCIDRs:       strings.Split(*allow, ","),
		UserQuota:        *userQuota,
		Logger:           log,
	}, []net.PacketConn{pc}, []net.Listener{ln})
	if err != nil {
		return err
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	fmt.Println("ready")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	return srv.Close()
}
