package homeserver

import "context"

// keyCounts fills the end-to-end encryption key counts of a sync response.
// TODO(lead): wire storage's OneTimeKeyCounts and UnusedFallbackKeyTypes.
func (s *Server) keyCounts(ctx context.Context, req *syncRequest, resp *syncResponse) error {
	return nil
}
