package homeserver

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	eventsSent   *prometheus.CounterVec
	syncRequests prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		eventsSent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_homeserver_events_persisted_total",
			Help: "Room events persisted, by type class (state or message).",
		}, []string{"class"}),
		syncRequests: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "switchboard_homeserver_sync_requests_total",
			Help: "/sync requests answered.",
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.eventsSent, m.syncRequests} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}
