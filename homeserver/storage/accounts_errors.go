package storage

import "errors"

var (
	// ErrKeyConflict is returned by UploadKeys when a one-time key ID is
	// uploaded again with different content (spec: Client-Server API,
	// "POST /keys/upload").
	ErrKeyConflict = errors.New("storage: one-time key already exists with different content")
)
