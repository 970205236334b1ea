package sfu

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the switchboard_sfu_* series. Per-packet counters are
// resolved once so that incrementing them does not allocate.
type metrics struct {
	conferences   prometheus.Gauge
	participants  prometheus.Gauge
	tracks        prometheus.Gauge
	packets       prometheus.Counter
	bytes         prometheus.Counter
	dropped       prometheus.Counter
	nacks         prometheus.Counter
	retransmits   prometheus.Counter
	plis          prometheus.Counter
	layerSwitches prometheus.Counter
	bandwidth     prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		conferences: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "switchboard_sfu_conferences", Help: "Conferences on this node."}),
		participants: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "switchboard_sfu_participants", Help: "Participants on this node."}),
		tracks: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "switchboard_sfu_tracks", Help: "Published tracks on this node."}),
		packets: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "switchboard_sfu_forwarded_packets_total", Help: "RTP packets forwarded to subscribers."}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "switchboard_sfu_forwarded_bytes_total", Help: "RTP payload bytes forwarded to subscribers."}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "switchboard_sfu_dropped_packets_total", Help: "Packets dropped because a subscriber's queue was full."}),
		nacks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "switchboard_sfu_nacks_total", Help: "Packets requested again by subscribers (RFC 4585 generic NACK)."}),
		retransmits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "switchboard_sfu_retransmitted_packets_total", Help: "Packets resent from the cache on NACK."}),
		plis: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "switchboard_sfu_keyframe_requests_total", Help: "PLIs sent to publishers."}),
		layerSwitches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "switchboard_sfu_layer_switches_total", Help: "Simulcast layer switches (including pause and resume)."}),
		bandwidth: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "switchboard_sfu_estimated_bandwidth_bps",
			Help:    "Per-subscriber bandwidth estimates, sampled at each allocation.",
			Buckets: prometheus.ExponentialBuckets(50_000, 2, 10),
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.conferences, m.participants, m.tracks, m.packets, m.bytes,
		m.dropped, m.nacks, m.retransmits, m.plis, m.layerSwitches, m.bandwidth} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("%w: metrics: %w", ErrInvalidConfig, err)
		}
	}
	return m, nil
}
