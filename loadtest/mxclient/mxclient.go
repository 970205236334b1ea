// Package mxclient is the minimal Matrix client-server API client the load
// tools (loadtest/sync, loadtest/soak) share: plain net/http with the
// caller's keep-alive pool, JSON in and out, registration with the dummy
// auth flow and room creation. Each tool adds the requests only it makes.
package mxclient

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// ClientAPI is the path prefix of the client-server API v3 endpoints.
const ClientAPI = "/_matrix/client/v3"

// Client is one user's session against one server.
type Client struct {
	Base  string       // http://host:port
	HC    *http.Client // the caller's pool; shared between clients is fine
	User  string       // user ID, set by Register
	Token string       // access token, set by Register
}

// APIError is a non-200 answer, kept whole for the tools' reports.
type APIError struct {
	Method string `json:"method"`
	Path   string `json:"path"` // without the query
	Status int    `json:"status"`
	Body   string `json:"body"` // at most 300 bytes, see Truncate
}

func (e *APIError) Error() string {
	return fmt.Sprintf("%s %s: %d %s", e.Method, e.Path, e.Status, e.Body)
}

// Do sends one request (body, when not nil, as JSON) and returns the body
// of a 200 answer; other answers are *APIError.
func (c *Client) Do(ctx context.Context, method, path string, body any) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.Base+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := c.HC.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		if i := strings.IndexByte(path, '?'); i >= 0 {
			path = path[:i]
		}
		return nil, &APIError{Method: method, Path: path, Status: resp.StatusCode, Body: Truncate(string(data), 300)}
	}
	return data, nil
}

// Truncate cuts s to n bytes, marking the cut with an ellipsis.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// Register creates the account with the dummy auth flow (spec: "Account
// registration", m.login.dummy), answering the user-interactive auth
// session if the server asks for one, and keeps the session in c.
func (c *Client) Register(ctx context.Context, name, password string) error {
	req := map[string]any{
		"username": name, "password": password,
		"auth": map[string]string{"type": "m.login.dummy"},
	}
	data, err := c.Do(ctx, http.MethodPost, ClientAPI+"/register", req)
	if ae, ok := err.(*APIError); ok && ae.Status == http.StatusUnauthorized {
		var uia struct {
			Session string `json:"session"`
		}
		if json.Unmarshal([]byte(ae.Body), &uia) == nil && uia.Session != "" {
			req["auth"] = map[string]string{"type": "m.login.dummy", "session": uia.Session}
			data, err = c.Do(ctx, http.MethodPost, ClientAPI+"/register", req)
		}
	}
	if err != nil {
		return err
	}
	var resp struct {
		UserID      string `json:"user_id"`
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(data, &resp); err != nil {
		return fmt.Errorf("register: %w", err)
	}
	if resp.AccessToken == "" {
		return fmt.Errorf("register %s: no access token in %s", name, Truncate(string(data), 200))
	}
	c.User, c.Token = resp.UserID, resp.AccessToken
	return nil
}

// CreateRoom creates a public_chat room named name and returns its ID
// (spec: POST /createRoom).
func (c *Client) CreateRoom(ctx context.Context, name string) (string, error) {
	data, err := c.Do(ctx, http.MethodPost, ClientAPI+"/createRoom",
		map[string]any{"preset": "public_chat", "name": name})
	if err != nil {
		return "", err
	}
	var resp struct {
		RoomID string `json:"room_id"`
	}
	if err := json.Unmarshal(data, &resp); err != nil || resp.RoomID == "" {
		return "", fmt.Errorf("createRoom: no room_id in %s", Truncate(string(data), 200))
	}
	return resp.RoomID, nil
}
