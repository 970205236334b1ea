package homeserver

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
)

// FuzzRTCQueryParams: any query string gives the delay and sticky
// parsers an answer or a Matrix error, never a panic, and what they
// accept is within the configured limits.
func FuzzRTCQueryParams(f *testing.F) {
	for _, s := range []string{
		"org.matrix.msc4140.delay=1000",
		"org.matrix.msc4140.delay=-5&org.matrix.msc4354.sticky_duration_ms=9999999",
		"org.matrix.msc4140.delay=99999999999999999999",
		"org.matrix.msc4140.parent_delay_id=x",
		"org.matrix.msc4354.sticky_duration_ms=0&org.matrix.msc4140.delay=",
		"%zz=1&org.matrix.msc4140.delay=1e3",
	} {
		f.Add(s)
	}
	s := &Server{cfg: Config{RTC: RTCConfig{}}}
	if err := s.cfg.RTC.validate(); err != nil {
		f.Fatal(err)
	}
	e := echo.New()
	f.Fuzz(func(t *testing.T, query string) {
		req := httptest.NewRequest(http.MethodPut, "/x", nil)
		req.URL.RawQuery = query
		c := e.NewContext(req, httptest.NewRecorder())
		delay, ok, err := s.delayQuery(c)
		if err != nil {
			if _, isMatrix := err.(*MatrixError); !isMatrix {
				t.Fatalf("delay: %T %v is not a Matrix error", err, err)
			}
		} else if ok && (delay < 0 || delay > s.cfg.RTC.MaxDelay) {
			t.Fatalf("delay %v accepted", delay)
		}
		sticky, err := s.stickyQuery(c)
		if err != nil {
			if _, isMatrix := err.(*MatrixError); !isMatrix {
				t.Fatalf("sticky: %T %v is not a Matrix error", err, err)
			}
		} else if sticky < 0 || sticky > time.Hour.Milliseconds() {
			t.Fatalf("sticky %d accepted", sticky)
		}
	})
}
