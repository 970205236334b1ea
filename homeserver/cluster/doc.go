// Package cluster runs several nodes of one Switchboard server on one
// PostgreSQL database and one Redis: every node is the same binary and
// configuration, any node serves any client.
//
// PostgreSQL is the only source of truth; Redis only carries wake-ups, so
// losing Redis costs latency, never data. What this package owns:
//
//   - Notifier, the /sync notifier of a node (homeserver/sync.Notifier):
//     after each commit it publishes the position and the keys the write
//     touched on a Redis channel, and every node wakes its matching
//     long-polls. It subscribes before the homeserver reads the database's
//     position at start (synapse#7427: events were lost when catch-up ran
//     before the subscription was live). While Redis is down it reads
//     PostgreSQL's committed position every second and wakes every waiter
//     when it moved: slower, never lost. It comes back by itself when Redis
//     returns. Nothing about a node's health depends on Redis
//     (livekit#4663).
//
// How writes stay ordered across nodes (one write lock per group-commit
// transaction) is in homeserver/storage/cluster.go; each committed batch
// reports a link (the highest position before it, its highest) that the
// Notifier publishes after the batch's keys. A node that has every link
// from its start up to a position knows every key touched up to there, and
// only then lets a /sync stream skip a query (Notifier.LastFor); with a
// link missing (a dropped message, an outage) it answers conservatively
// until the next check of the database closes the gap.
//
// It imports homeserver/sync and homeserver/storage and nothing that
// serves HTTP; cmd/switchboard wires it into homeserver.Config.
package cluster
