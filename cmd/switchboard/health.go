package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/pprof"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// readyTimeout bounds one readiness check (a database ping, a socket probe).
const readyTimeout = 3 * time.Second

// readyCheck is one dependency /ready reports on.
type readyCheck struct {
	name  string
	check func(context.Context) error
}

// readiness answers /health and /ready. /health is 200 while the process
// serves; /ready is 200 only when every check passes and the process is not
// shutting down, else 503 with a JSON reason naming the failed check.
type readiness struct {
	stopping atomic.Bool
	checks   []readyCheck
}

type readyBody struct {
	Status string            `json:"status"`
	Reason string            `json:"reason,omitempty"`
	Checks map[string]string `json:"checks,omitempty"`
}

func (r *readiness) health(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	writeJSON(w, http.StatusOK, readyBody{Status: "ok"})
}

func (r *readiness) ready(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if r.stopping.Load() {
		writeJSON(w, http.StatusServiceUnavailable, readyBody{Status: "unavailable", Reason: "shutting down"})
		return
	}
	body := readyBody{Status: "ready", Checks: map[string]string{}}
	code := http.StatusOK
	for _, c := range r.checks {
		ctx, cancel := context.WithTimeout(req.Context(), readyTimeout)
		err := c.check(ctx)
		cancel()
		if err != nil {
			body.Checks[c.name] = err.Error()
			if code == http.StatusOK {
				code = http.StatusServiceUnavailable
				body.Status = "unavailable"
				body.Reason = c.name + ": " + err.Error()
			}
			continue
		}
		body.Checks[c.name] = "ok"
	}
	writeJSON(w, code, body)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// newRegistry is the process's Prometheus registry: Go runtime and process
// collectors plus switchboard_build_info. Packages name their own metrics
// with the switchboard_ prefix.
func newRegistry() (*prometheus.Registry, error) {
	reg := prometheus.NewRegistry()
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "switchboard_build_info",
		Help: "Always 1; labels say which build of switchboard is running.",
	}, []string{"version"})
	build.WithLabelValues(version()).Set(1)
	for _, c := range []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		build,
	} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return reg, nil
}

// operatorRoutes adds /health and /ready to mux.
func (r *readiness) operatorRoutes(mux *http.ServeMux) {
	mux.HandleFunc("/health", r.health)
	mux.HandleFunc("/ready", r.ready)
}

// metricsHandler serves /metrics, /health and /ready on the metrics
// listener.
func metricsHandler(reg *prometheus.Registry, r *readiness, pprofOn bool) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	r.operatorRoutes(mux)
	if pprofOn {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}
