package turn

import (
	"net/netip"
	"sync"
)

// slowPkt is a datagram handed from the relay poller to a goroutine of
// pion's.
type slowPkt struct {
	buf  []byte // channelDataHeader + relayReadSize + 3 bytes, data at [4:]
	n    int
	from netip.AddrPort
}

// slowQueue carries the datagrams the relay poller does not relay itself
// to the pion goroutine that reads a socket: STUN messages from clients,
// and peer data that pion turns into Data indications. The poller never
// waits on it: buffers are made as needed up to the queue's length, and a
// datagram that finds none free is dropped, as a full socket would drop it.
// On Linux the poller reads no more than q has room for and stops reading
// the socket while q is full, so nothing is dropped here.
type slowQueue struct {
	queue chan *slowPkt
	free  chan *slowPkt
	nbufs int // buffers made; poller only
	done  chan struct{}
	once  sync.Once

	// The relay poller's registration of the socket q is fed from (Linux):
	// its descriptor and epoll id, and whether the poller has stopped
	// reading it until q's reader catches up.
	fd      int
	epollID uint32
	pauseMu sync.Mutex
	paused  bool // guarded by pauseMu
}

func newSlowQueue(n int) *slowQueue {
	return &slowQueue{queue: make(chan *slowPkt, n), free: make(chan *slowPkt, n), done: make(chan struct{})}
}

// put queues a copy of b from the given sender; the poller's goroutine only.
func (q *slowQueue) put(b []byte, from netip.AddrPort) {
	var pk *slowPkt
	select {
	case pk = <-q.free:
	default:
		if q.nbufs == cap(q.queue) {
			return
		}
		q.nbufs++
		pk = &slowPkt{buf: make([]byte, channelDataHeader+relayReadSize+3)}
	}
	pk.n = copy(pk.buf[channelDataHeader:], b)
	pk.from = from
	q.queue <- pk // never blocks: no more buffers exist than it holds
}

// get waits for the next datagram; false once the queue is closed.
func (q *slowQueue) get() (*slowPkt, bool) {
	select {
	case pk := <-q.queue:
		return pk, true
	case <-q.done:
		return nil, false
	}
}

// room is how many more datagrams the queue takes.
func (q *slowQueue) room() int { return cap(q.queue) - len(q.queue) }

// recycle gives a buffer from get back.
func (q *slowQueue) recycle(pk *slowPkt) { q.free <- pk }

func (q *slowQueue) close() { q.once.Do(func() { close(q.done) }) }
