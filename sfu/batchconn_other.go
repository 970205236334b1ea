//go:build !linux

package sfu

import "net"

// batchConn batches the fan-out's writes with sendmmsg(2) on Linux; on
// other systems every write goes out at once.
type batchConn struct{ net.PacketConn }

func newBatchConn(net.PacketConn) *batchConn { return nil }

func (c *batchConn) begin() {}

func (c *batchConn) end() {}
