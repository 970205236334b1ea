package main

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"time"
)

// stallTimeout bounds how long one read of a request body, or one write
// of a response, may block on a client that does not move: a slow-body
// (slowloris-style) upload, or a client that never reads its /sync
// answers. It is not a limit on the whole request, so long-polls and big
// downloads over slow links still work as long as bytes keep moving.
const stallTimeout = 60 * time.Second

// stallGuard wraps h so that every body read and every response write has
// a deadline of stall from when it starts (http.ResponseController
// deadlines on the connection). The listener's http.Server has no
// WriteTimeout or ReadTimeout, which would cut /sync long-polls; without
// this, a client that stops reading keeps its handler goroutine and
// buffers forever.
func stallGuard(h http.Handler, stall time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		// A deadline left by the previous request on this connection.
		_ = rc.SetWriteDeadline(time.Time{})
		sw := &stallWriter{ResponseWriter: w, rc: rc, stall: stall}
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = &stallReader{body: r.Body, rc: rc, stall: stall}
		}
		defer func() {
			if !sw.hijacked {
				// net/http flushes the rest of the answer after the
				// handler returns: that flush gets a deadline too.
				_ = rc.SetWriteDeadline(time.Now().Add(stall))
			}
		}()
		h.ServeHTTP(sw, r)
	})
}

// stallReader gives each read of a request body its own deadline and
// clears it at the end of the body (net/http's background read of the
// connection must not time out while a slow handler runs). After a
// timeout the deadline stays past, so net/http's discarding of the unread
// body fails too and the connection closes.
type stallReader struct {
	body  io.ReadCloser
	rc    *http.ResponseController
	stall time.Duration
}

func (s *stallReader) Read(p []byte) (int, error) {
	_ = s.rc.SetReadDeadline(time.Now().Add(s.stall))
	n, err := s.body.Read(p)
	if err == io.EOF {
		_ = s.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}

func (s *stallReader) Close() error { return s.body.Close() }

// stallWriter gives each write and flush of the answer its own deadline.
type stallWriter struct {
	http.ResponseWriter
	rc       *http.ResponseController
	stall    time.Duration
	hijacked bool
}

func (s *stallWriter) Write(p []byte) (int, error) {
	_ = s.rc.SetWriteDeadline(time.Now().Add(s.stall))
	return s.ResponseWriter.Write(p)
}

// Flush keeps http.Flusher working through the wrapper.
func (s *stallWriter) Flush() {
	_ = s.rc.SetWriteDeadline(time.Now().Add(s.stall))
	_ = s.rc.Flush()
}

// Hijack hands the connection over; its deadlines are then the caller's.
func (s *stallWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := s.rc.Hijack()
	if err == nil {
		s.hijacked = true
		_ = c.SetDeadline(time.Time{})
	}
	return c, rw, err
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (s *stallWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }
