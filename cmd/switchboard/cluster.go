package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"regexp"
	"strings"

	"github.com/switchboard-chat/switchboard/homeserver"
	"github.com/switchboard-chat/switchboard/homeserver/cluster"
	"github.com/switchboard-chat/switchboard/homeserver/storage"
)

var nodeIDPattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

func validNodeID(s string) bool { return nodeIDPattern.MatchString(s) }

func isPostgresURL(s string) bool {
	return strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://")
}

// joinCluster makes this process one node of several (--redis with a
// postgres:// database; validate refuses SQLite): the /sync notifier
// becomes homeserver/cluster's, subscribed to Redis before the homeserver
// reads its start position, and writes take the cluster write lock. It
// returns what stops it, to run after the homeserver closes.
func joinCluster(ctx context.Context, cfg *Config, hsCfg *homeserver.Config, log *slog.Logger) (func(), error) {
	nodeID := cfg.NodeID
	if nodeID == "" {
		b := make([]byte, 6)
		_, _ = rand.Read(b)
		nodeID = "node-" + hex.EncodeToString(b)
	}
	positions, err := storage.OpenPositions(cfg.Database)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	n, err := cluster.New(ctx, cluster.Config{
		NodeID:    nodeID,
		Redis:     cfg.Redis,
		Channel:   "switchboard:" + cfg.ServerName + ":wake",
		Positions: positions,
	}, log)
	if err != nil {
		positions.Close()
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	log.Info("several nodes: this node joins the cluster", "node_id", nodeID, "generated", cfg.NodeID == "", "redis", redactURL(cfg.Redis), "redis_up", n.RedisUp())
	hsCfg.Notifier = n
	hsCfg.Cluster = n
	hsCfg.Ephemeral = n.Ephemeral()
	return func() {
		if err := n.Close(); err != nil {
			log.Warn("closing the cluster notifier", "err", err)
		}
		positions.Close()
	}, nil
}
