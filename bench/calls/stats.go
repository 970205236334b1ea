package main

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/switchboard-chat/switchboard/bench/calls/callclient"
)

// phaseNames are the phases of one join, in order; each sample holds the
// time from the invite being sent to each.
var phaseNames = []string{"answer received", "ICE connected", "DTLS connected", "first RTP", "first video RTP (key frame)"}

// phaseSample is one join's phase times, from the invite being sent.
type phaseSample [5]time.Duration

func newSample(ph callclient.Phases) phaseSample {
	var s phaseSample
	for i, at := range []time.Time{ph.Answered, ph.ICEConnected, ph.DTLSConnected, ph.FirstRTP, ph.FirstVideo} {
		s[i] = at.Sub(ph.InviteSent)
	}
	return s
}

// dist summarises a set of durations.
type dist struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50_ms"`
	P99   float64 `json:"p99_ms"`
	Max   float64 `json:"max_ms"`
}

// summarise sorts d in place and returns its nearest-rank percentiles.
func summarise(d []time.Duration) dist {
	if len(d) == 0 {
		return dist{}
	}
	slices.Sort(d)
	return dist{Count: len(d), P50: ms(percentile(d, 50)), P99: ms(percentile(d, 99)), Max: ms(d[len(d)-1])}
}

// percentile is the nearest-rank p-th percentile of sorted d (not empty).
func percentile(sorted []time.Duration, p float64) time.Duration {
	rank := int(p/100*float64(len(sorted))+0.999999999) - 1
	return sorted[max(0, min(rank, len(sorted)-1))]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// phaseReport is one phase: the time from the invite (cumulative) and
// from the phase before (step).
type phaseReport struct {
	Phase      string `json:"phase"`
	FromInvite dist   `json:"from_invite"`
	Step       dist   `json:"step"`
}

// scenarioReport is one scenario's joins.
type scenarioReport struct {
	Name string `json:"name"`
	// Protocol is "native" (phases from the invite) or "livekit" (phases
	// from the OpenID token request; from_invite holds those).
	Protocol string        `json:"protocol"`
	Phases   []phaseReport `json:"phases"`
	Failures []string      `json:"failures,omitempty"`
	// EarlyVideo counts LiveKit joins whose first remote video packets
	// came before a key frame: the SFU starts a subscriber at a key
	// frame, but in LiveKit's single PeerConnection mode it may send it
	// before the client has applied the answer that declares its SSRC,
	// and the client drops what it cannot place and asks for a key
	// frame (as browsers do). Their first key frame is the one asked for.
	EarlyVideo       int     `json:"early_video_joins,omitempty"`
	WallSeconds      float64 `json:"wall_s"`
	ServerCPUSeconds float64 `json:"server_cpu_s"`
}

func (sr *scenarioReport) summarise(samples []phaseSample) {
	sr.Phases = nil
	for i, name := range phaseNames {
		var from, step []time.Duration
		for _, s := range samples {
			from = append(from, s[i])
			prev := time.Duration(0)
			if i > 0 && i < 4 {
				prev = s[i-1]
			} else if i == 4 {
				prev = s[2] // first video counts from DTLS, like first RTP
			}
			step = append(step, s[i]-prev)
		}
		sr.Phases = append(sr.Phases, phaseReport{Phase: name, FromInvite: summarise(from), Step: summarise(step)})
	}
}

// report is one run.
type report struct {
	Joins     int              `json:"joins"`
	Load      int              `json:"load"`
	LoadSubs  int              `json:"load_subs"`
	Scenarios []scenarioReport `json:"scenarios"`
	Errors    []string         `json:"errors,omitempty"`
}

func (r *report) failed() bool {
	if len(r.Errors) > 0 {
		return true
	}
	for _, s := range r.Scenarios {
		if len(s.Failures) > 0 {
			return true
		}
	}
	return false
}

func (r *report) writeJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

func (r *report) writeTable(w io.Writer) {
	fmt.Fprintf(w, "group-call setup through the focus: %d sequential joins per scenario; load: %d streamers, each subscribed to %d others\n",
		r.Joins, r.Load, r.LoadSubs)
	for _, s := range r.Scenarios {
		fmt.Fprintf(w, "\n%s: %d joins ok, %d failed, %.1f s, server CPU %.1f s\n", s.Name, countOK(s), len(s.Failures),
			s.WallSeconds, s.ServerCPUSeconds)
		if s.EarlyVideo > 0 {
			fmt.Fprintf(w, "  %d joins got video before the answer declaring it was applied, and asked for a key frame\n", s.EarlyVideo)
		}
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "phase\tstep p50 ms\tstep p99 ms\tfrom start p50 ms\tfrom start p99 ms\tfrom start max ms\t")
		for _, p := range s.Phases {
			fmt.Fprintf(tw, "%s\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t\n", p.Phase, p.Step.P50, p.Step.P99,
				p.FromInvite.P50, p.FromInvite.P99, p.FromInvite.Max)
		}
		tw.Flush()
		for i, f := range s.Failures {
			if i == 5 {
				fmt.Fprintf(w, "  ... %d more failures\n", len(s.Failures)-5)
				break
			}
			fmt.Fprintf(w, "  failure: %s\n", f)
		}
	}
	fmt.Fprintln(w, "\njoin → first remote video key frame packet:")
	for _, s := range r.Scenarios {
		if n := len(s.Phases); n > 0 {
			v := s.Phases[n-1].FromInvite
			fmt.Fprintf(w, "  %-8s %-22s p50 %7.1f ms  p99 %7.1f ms  (%d joins)\n", s.Protocol, s.Name, v.P50, v.P99, v.Count)
		}
	}
	for _, e := range r.Errors {
		fmt.Fprintf(w, "error: %s\n", e)
	}
}

func countOK(s scenarioReport) int {
	if len(s.Phases) == 0 {
		return 0
	}
	return s.Phases[0].FromInvite.Count
}
