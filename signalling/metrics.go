package signalling

import "github.com/prometheus/client_golang/prometheus"

// metrics are the focus's Prometheus metrics.
type metrics struct {
	calls    prometheus.Gauge
	invites  *prometheus.CounterVec // by result: accepted or the hangup reason
	messages *prometheus.CounterVec // to-device and data-channel messages by type
	dropped  *prometheus.CounterVec // messages dropped, by why
	hangups  *prometheus.CounterVec // participants removed, by reason
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		calls: prometheus.NewGauge(prometheus.GaugeOpts{Name: "switchboard_focus_calls",
			Help: "Participants connected to the SFU through the focus."}),
		invites: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchboard_focus_invites_total",
			Help: "m.call.invite messages to the focus, by result."}, []string{"result"}),
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchboard_focus_messages_total",
			Help: "Signalling messages received by the focus, by transport and type."}, []string{"transport", "type"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchboard_focus_dropped_total",
			Help: "Signalling messages the focus ignored, by cause."}, []string{"cause"}),
		hangups: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchboard_focus_hangups_total",
			Help: "Participants removed, by hangup reason (user_hangup for the client's own)."}, []string{"reason"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.calls, m.invites, m.messages, m.dropped, m.hangups} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}
