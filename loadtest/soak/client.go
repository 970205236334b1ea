package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// client is a minimal Matrix client-server API client on plain net/http,
// enough for the chat and 1:1-call parts of the mix: register, create and
// join rooms, send room events and /sync.
type client struct {
	base  string // http://host:port
	hc    *http.Client
	user  string
	token string
}

// apiError is a non-200 answer.
type apiError struct {
	Method string
	Path   string
	Status int
	Body   string
}

func (e *apiError) Error() string {
	return fmt.Sprintf("%s %s: %d %s", e.Method, e.Path, e.Status, e.Body)
}

const clientAPI = "/_matrix/client/v3"

// do sends one request and returns the body of a 200 answer; other answers
// are *apiError.
func (c *client) do(ctx context.Context, method, path string, body any) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
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
		return nil, &apiError{Method: method, Path: path, Status: resp.StatusCode, Body: truncate(string(data), 300)}
	}
	return data, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// register creates the account with the dummy auth flow (spec: "Account
// registration", m.login.dummy), answering the user-interactive auth
// session if the server asks for one.
func (c *client) register(ctx context.Context, name, password string) error {
	req := map[string]any{
		"username": name, "password": password,
		"auth": map[string]string{"type": "m.login.dummy"},
	}
	data, err := c.do(ctx, http.MethodPost, clientAPI+"/register", req)
	if ae, ok := err.(*apiError); ok && ae.Status == http.StatusUnauthorized {
		var uia struct {
			Session string `json:"session"`
		}
		if json.Unmarshal([]byte(ae.Body), &uia) == nil && uia.Session != "" {
			req["auth"] = map[string]string{"type": "m.login.dummy", "session": uia.Session}
			data, err = c.do(ctx, http.MethodPost, clientAPI+"/register", req)
		}
	}
	if err != nil {
		return err
	}
	var resp struct {
		UserID      string `json:"user_id"`
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(data, &resp); err != nil || resp.AccessToken == "" {
		return fmt.Errorf("register %s: no access token in %s", name, truncate(string(data), 200))
	}
	c.user, c.token = resp.UserID, resp.AccessToken
	return nil
}

// logout ends the session (spec: POST /logout), as a client that leaves
// properly does.
func (c *client) logout(ctx context.Context) error {
	_, err := c.do(ctx, http.MethodPost, clientAPI+"/logout", map[string]any{})
	return err
}

func (c *client) createRoom(ctx context.Context, name string) (string, error) {
	data, err := c.do(ctx, http.MethodPost, clientAPI+"/createRoom",
		map[string]any{"preset": "public_chat", "name": name})
	if err != nil {
		return "", err
	}
	var resp struct {
		RoomID string `json:"room_id"`
	}
	if err := json.Unmarshal(data, &resp); err != nil || resp.RoomID == "" {
		return "", fmt.Errorf("createRoom: no room_id in %s", truncate(string(data), 200))
	}
	return resp.RoomID, nil
}

// join joins a room; via names the servers to join through (spec: POST
// /join/{roomIdOrAlias}?server_name=).
func (c *client) join(ctx context.Context, roomID string, via ...string) error {
	q := ""
	if len(via) > 0 {
		v := url.Values{}
		for _, s := range via {
			v.Add("server_name", s)
		}
		q = "?" + v.Encode()
	}
	_, err := c.do(ctx, http.MethodPost, clientAPI+"/join/"+url.PathEscape(roomID)+q, map[string]any{})
	return err
}

// sendEvent PUTs one room event and returns its event ID (spec: PUT
// /rooms/{roomId}/send/{eventType}/{txnId}).
func (c *client) sendEvent(ctx context.Context, roomID, typ, txnID string, content any) (string, error) {
	data, err := c.do(ctx, http.MethodPut,
		clientAPI+"/rooms/"+url.PathEscape(roomID)+"/send/"+url.PathEscape(typ)+"/"+url.PathEscape(txnID), content)
	if err != nil {
		return "", err
	}
	var resp struct {
		EventID string `json:"event_id"`
	}
	if err := json.Unmarshal(data, &resp); err != nil || resp.EventID == "" {
		return "", fmt.Errorf("send: no event_id in %s", truncate(string(data), 200))
	}
	return resp.EventID, nil
}

// turnCreds are the answer of GET /voip/turnServer.
type turnCreds struct {
	Username string   `json:"username"`
	Password string   `json:"password"`
	URIs     []string `json:"uris"`
	TTL      int      `json:"ttl"`
}

func (c *client) turnServer(ctx context.Context) (turnCreds, error) {
	var tc turnCreds
	data, err := c.do(ctx, http.MethodGet, clientAPI+"/voip/turnServer", nil)
	if err != nil {
		return tc, err
	}
	if err := json.Unmarshal(data, &tc); err != nil || tc.Username == "" {
		return tc, fmt.Errorf("turnServer: no credentials in %s", truncate(string(data), 200))
	}
	return tc, nil
}

// syncFilter: timelines deep enough not to be cut at the mix's rate, no
// presence, no account data, lazy-loaded members.
var syncFilter = map[string]any{
	"room": map[string]any{
		"timeline": map[string]any{"limit": 1000},
		"state":    map[string]any{"lazy_load_members": true},
	},
	"presence":     map[string]any{"not_types": []string{"*"}},
	"account_data": map[string]any{"not_types": []string{"*"}},
}

// syncPath is the path and query of a /sync with an inline filter.
func syncPath(since string, timeoutMS int64) string {
	f, _ := json.Marshal(syncFilter)
	q := url.Values{}
	if since != "" {
		q.Set("since", since)
	}
	q.Set("filter", string(f))
	q.Set("timeout", strconv.FormatInt(timeoutMS, 10))
	return clientAPI + "/sync?" + q.Encode()
}

// syncEvent is a timeline event as far as the mix reads it.
type syncEvent struct {
	Type    string          `json:"type"`
	EventID string          `json:"event_id"`
	Sender  string          `json:"sender"`
	Content json.RawMessage `json:"content"`
}

// syncResponse is the part of a /sync answer the mix reads.
type syncResponse struct {
	NextBatch string `json:"next_batch"`
	Rooms     struct {
		Join map[string]struct {
			Timeline struct {
				Events  []syncEvent `json:"events"`
				Limited bool        `json:"limited"`
			} `json:"timeline"`
		} `json:"join"`
		Invite map[string]json.RawMessage `json:"invite"`
	} `json:"rooms"`
}

func (c *client) sync(ctx context.Context, since string, timeoutMS int64) (*syncResponse, error) {
	data, err := c.do(ctx, http.MethodGet, syncPath(since, timeoutMS), nil)
	if err != nil {
		return nil, err
	}
	var r syncResponse
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("sync: %w", err)
	}
	return &r, nil
}
