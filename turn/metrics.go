package turn

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Transport and direction labels of the relayed traffic counters.
const (
	transportUDP = 0
	transportTCP = 1
	dirToPeer    = 0
	dirToClient  = 1
)

// metrics holds the switchboard_turn_* collectors. The per-packet counters
// are resolved to plain Counters up front so the relay path only does an
// atomic add.
type metrics struct {
	allocations   prometheus.Gauge
	relayedBytes  [2][2]prometheus.Counter // [transport][direction]
	relayedPkts   [2][2]prometheus.Counter
	bandwidthDrop prometheus.Counter
	authFailures  *prometheus.CounterVec
	denials       [reasonCount]prometheus.Counter
	quotaRefusals [2]prometheus.Counter // user, total
	bindingLimit  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{}
	m.allocations = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "switchboard_turn_allocations",
		Help: "Current TURN allocations (relay sockets held).",
	})
	bytes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "switchboard_turn_relayed_bytes_total",
		Help: "Payload bytes relayed, by relay transport and direction.",
	}, []string{"transport", "direction"})
	pkts := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "switchboard_turn_relayed_packets_total",
		Help: "Datagrams (UDP) or reads (TCP) relayed, by relay transport and direction.",
	}, []string{"transport", "direction"})
	for t, tn := range []string{"udp", "tcp"} {
		for d, dn := range []string{"to_peer", "to_client"} {
			m.relayedBytes[t][d] = bytes.WithLabelValues(tn, dn)
			m.relayedPkts[t][d] = pkts.WithLabelValues(tn, dn)
		}
	}
	m.bandwidthDrop = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "switchboard_turn_bandwidth_dropped_packets_total",
		Help: "UDP datagrams dropped because an allocation exceeded its bandwidth cap.",
	})
	m.authFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "switchboard_turn_auth_failures_total",
		Help: "Requests refused for their credentials (401) or nonce (438), by reason.",
	}, []string{"reason"})
	for _, r := range []string{authWrongRealm, authUnknownUser, authMalformed, authExpired, authTooLong, authBadHMAC, authStaleNonce} {
		m.authFailures.WithLabelValues(r)
	}
	den := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "switchboard_turn_peer_denials_total",
		Help: "Peer addresses refused by the relay policy, by reason.",
	}, []string{"reason"})
	for r := Reason(1); r < reasonCount; r++ {
		m.denials[r] = den.WithLabelValues(r.String())
	}
	m.denials[ReasonNone] = den.WithLabelValues(ReasonNone.String())
	quota := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "switchboard_turn_quota_refusals_total",
		Help: "Allocations refused with 486 (Allocation Quota Reached), by quota.",
	}, []string{"quota"})
	m.quotaRefusals[0] = quota.WithLabelValues("user")
	m.quotaRefusals[1] = quota.WithLabelValues("total")
	m.bindingLimit = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "switchboard_turn_binding_rate_limited_total",
		Help: "Unauthenticated Binding requests dropped by the per-source-IP rate limit.",
	})
	if reg != nil {
		for _, c := range []prometheus.Collector{m.allocations, bytes, pkts, m.bandwidthDrop, m.authFailures, den, quota, m.bindingLimit} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}
