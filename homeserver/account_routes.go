package homeserver

// accountRoutes registers the account-side endpoints (see account_*.go).
func (s *Server) accountRoutes(a api) {}
