// Command sfubench is the SFU load tool (issue 4): on loopback, one
// publisher (Opus-sized audio at 50 packets/s and VP8 video in three
// simulcast layers, 2.5 Mbit/s) to N subscribers, and rooms of N
// participants who all publish and receive. It reports forwarded packets
// per CPU-second, the one-way delay from the publisher's write to the
// subscriber's read (p50, p99) and allocations per forwarded packet, and
// measures the same for a minimal Go UDP forwarder on the same packets, the
// machine's ceiling.
//
// The forwarder under test runs in a child process (this binary again), so
// that its CPU time and allocations are its own: the pion clients, which
// do SRTP and run interceptors too, stay in the parent. See README.md.
//
//	go run ./bench/sfu -subscribers 1,5,10,25 -rooms 4x4
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"
)

func main() {
	if mode := os.Getenv(childEnv); mode != "" {
		os.Exit(runChild(mode))
	}
	subs := flag.String("subscribers", "1,5,10,25", "comma-separated subscriber counts for one publisher")
	rooms := flag.String("rooms", "4x4", "comma-separated room shapes RxP: R rooms of P participants")
	warmup := flag.Duration("warmup", 3*time.Second, "settling time after traffic reaches its rate")
	duration := flag.Duration("duration", 10*time.Second, "measurement window per scenario and forwarder")
	ref := flag.Bool("reference", true, "also measure the reference UDP forwarder")
	flag.Parse()
	scs, err := parseScenarios(*subs, *rooms)
	if err != nil {
		fmt.Fprintln(os.Stderr, "sfubench:", err)
		os.Exit(2)
	}
	if _, err := run(os.Stdout, scs, options{warmup: *warmup, duration: *duration, reference: *ref}); err != nil {
		fmt.Fprintln(os.Stderr, "sfubench:", err)
		os.Exit(1)
	}
}

// row is one scenario's results.
type row struct {
	sc       scenario
	sfu, ref result
	hasRef   bool
}

// ratio is the SFU's forwarded packets per CPU-second over the reference's.
func (r row) ratio() float64 {
	if !r.hasRef || r.ref.perCPUSecond() == 0 {
		return 0
	}
	return r.sfu.perCPUSecond() / r.ref.perCPUSecond()
}

// run measures every scenario and prints the table to w.
func run(w io.Writer, scs []scenario, o options) ([]row, error) {
	fmt.Fprintf(w, "sfubench: %s, %d CPUs, GOMAXPROCS %d; load average at start: %s\n",
		runtime.Version(), runtime.NumCPU(), runtime.GOMAXPROCS(0), loadavg())
	fmt.Fprintf(w, "stream per publisher: %d packets/s (audio 50 + video layers %v bit/s); each subscriber gets audio + top layer = %d packets/s per publisher\n",
		streamPPS(), layerBitrates, forwardedPPS())
	fmt.Fprintf(w, "window %v after %v warm-up per forwarder\n\n", o.duration, o.warmup)
	var rows []row
	var errs []error
	for _, sc := range scs {
		// A scenario that fails (on a loaded machine, traffic may not
		// reach its rate) is reported; the others still run.
		rw := row{sc: sc}
		var err error
		if rw.sfu, err = runSFU(sc, o); err != nil {
			errs = append(errs, fmt.Errorf("%s, sfu: %w", sc.name, err))
			fmt.Fprintf(w, "%s, sfu: %v\n", sc.name, err)
			continue
		}
		if o.reference {
			if rw.ref, err = runRef(sc, o); err != nil {
				errs = append(errs, fmt.Errorf("%s, reference: %w", sc.name, err))
				fmt.Fprintf(w, "%s, reference: %v\n", sc.name, err)
				continue
			}
			rw.hasRef = true
		}
		rows = append(rows, rw)
	}
	printTable(w, rows)
	fmt.Fprintf(w, "\nload average at end: %s\n", loadavg())
	return rows, errors.Join(errs...)
}

func printTable(w io.Writer, rows []row) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tforwarder\tin pkt/s\twant pkt/s\tfwd pkt/s\trecv pkt/s\tCPU %\tpkt/CPU-s\tallocs/pkt\tp50\tp99\tratio\trtx pkt/s\tdropped\tclients CPU %\tgoroutines after/before\tKB/participant\t")
	for _, r := range rows {
		line := func(res result, ratio string) {
			cpuPct := 100 * res.cpu.Seconds() / res.window.Seconds()
			clientPct := 100 * res.clientCPU.Seconds() / res.window.Seconds()
			mem := "-"
			if res.heapPerParticipant != 0 {
				mem = fmt.Sprintf("%.0f", res.heapPerParticipant/1024)
			}
			fmt.Fprintf(tw, "%s\t%s\t%.0f\t%d\t%.0f\t%.0f\t%.0f\t%.0f\t%.3f\t%s\t%s\t%s\t%.0f\t%d\t%.0f\t%d/%d\t%s\t\n",
				r.sc.name, res.forwarder, float64(res.sent)/res.window.Seconds(), r.sc.expectedPPS(), res.pps(),
				float64(res.received)/res.window.Seconds(), cpuPct, res.perCPUSecond(), res.allocsPerPacket(),
				fmtDur(res.p50), fmtDur(res.p99), ratio, float64(res.resent)/res.window.Seconds(), res.dropped, clientPct,
				res.goroutinesAfter, res.goroutinesBefore, mem)
		}
		ratio := "-"
		if r.hasRef {
			ratio = fmt.Sprintf("%.2f", r.ratio())
		}
		line(r.sfu, ratio)
		if r.hasRef {
			line(r.ref, "")
		}
	}
	_ = tw.Flush()
	fmt.Fprintln(w, "\nCPU % is the forwarder process's user+system time over the window (100 = one core);")
	fmt.Fprintln(w, "fwd = first sends (NACK resends are rtx, not counted in fwd); dropped = packets dropped on full SFU send queues;")
	fmt.Fprintln(w, "pkt/CPU-s = forwarded packets / forwarder CPU-seconds (its CPU includes any resends); ratio = sfu pkt/CPU-s / reference pkt/CPU-s;")
	fmt.Fprintln(w, "p50/p99 = publisher write -> subscriber read, including the clients' own SRTP and pion stack on the sfu rows;")
	fmt.Fprintln(w, "KB/participant = the SFU's heap in use (after a collection) at the window's end minus before the first join, per participant.")
}

func fmtDur(d time.Duration) string {
	if d >= time.Duration(len(histogram{}.buckets))*bucketWidth {
		return ">200ms" // the histogram's last bucket
	}
	if d < time.Millisecond {
		return fmt.Sprintf("%dµs", d.Microseconds())
	}
	return fmt.Sprintf("%.2fms", float64(d.Microseconds())/1000)
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
