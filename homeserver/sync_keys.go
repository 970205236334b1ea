package homeserver

import "context"

// keyCounts fills the end-to-end encryption key counts of a sync response
// (spec: "End-to-End Encryption", extensions to /sync).
func (s *Server) keyCounts(ctx context.Context, req *syncRequest, resp *syncResponse) error {
	counts, fallback, err := s.db.SyncKeyCounts(ctx, req.UserID, req.DeviceID)
	if err != nil {
		return err
	}
	for alg, n := range counts {
		resp.OTKCounts[alg] = n
	}
	resp.Fallback = append(resp.Fallback, fallback...)
	return nil
}
