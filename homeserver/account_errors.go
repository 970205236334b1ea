package homeserver

import "errors"

// Errors of the account-side endpoints' exported API. (They belong with
// ErrConfig in errors.go; kept here while that file is being edited.)
var (
	// ErrUnknownOpenIDToken is returned by OpenIDUserInfo for a token that
	// does not exist or has expired.
	ErrUnknownOpenIDToken = errors.New("homeserver: unknown or expired OpenID token")
)
