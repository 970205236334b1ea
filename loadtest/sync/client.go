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

// client is a minimal Matrix client-server API client on plain net/http
// (keep-alive through the shared transport), enough for the load: register,
// create and join rooms, upload a filter, send and sync.
type client struct {
	base  string // http://host:port
	hc    *http.Client
	user  string
	token string
}

// apiError is a non-200 answer, kept whole for the report.
type apiError struct {
	Method string `json:"method"`
	Path   string `json:"path"`
	Status int    `json:"status"`
	Body   string `json:"body"`
}

func (e *apiError) Error() string {
	return fmt.Sprintf("%s %s: %d %s", e.Method, e.Path, e.Status, e.Body)
}

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

const clientAPI = "/_matrix/client/v3"

// register creates the account with the dummy auth flow (spec:
// "Account registration", m.login.dummy), answering the
// user-interactive auth session if the server asks for one.
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
	if err := json.Unmarshal(data, &resp); err != nil {
		return fmt.Errorf("register: %w", err)
	}
	if resp.AccessToken == "" {
		return fmt.Errorf("register %s: no access token in %s", name, truncate(string(data), 200))
	}
	c.user, c.token = resp.UserID, resp.AccessToken
	return nil
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

func (c *client) join(ctx context.Context, roomID string) error {
	_, err := c.do(ctx, http.MethodPost, clientAPI+"/rooms/"+url.PathEscape(roomID)+"/join", map[string]any{})
	return err
}

// syncFilter is what a chat client asks for: timelines deep enough not to
// be cut at this message rate, no presence, lazy-loaded members.
var syncFilter = map[string]any{
	"room": map[string]any{
		"timeline": map[string]any{"limit": 500},
		"state":    map[string]any{"lazy_load_members": true},
	},
	"presence":     map[string]any{"not_types": []string{"*"}},
	"account_data": map[string]any{"not_types": []string{"*"}},
}

// uploadFilter stores syncFilter (spec: POST /user/{userId}/filter) and
// returns its ID.
func (c *client) uploadFilter(ctx context.Context) (string, error) {
	data, err := c.do(ctx, http.MethodPost, clientAPI+"/user/"+url.PathEscape(c.user)+"/filter", syncFilter)
	if err != nil {
		return "", err
	}
	var resp struct {
		FilterID string `json:"filter_id"`
	}
	if err := json.Unmarshal(data, &resp); err != nil || resp.FilterID == "" {
		return "", fmt.Errorf("filter: no filter_id in %s", truncate(string(data), 200))
	}
	return resp.FilterID, nil
}

// send PUTs one m.room.message with the given transaction ID.
func (c *client) send(ctx context.Context, roomID, txnID, body string) error {
	_, err := c.do(ctx, http.MethodPut,
		clientAPI+"/rooms/"+url.PathEscape(roomID)+"/send/m.room.message/"+url.PathEscape(txnID),
		map[string]string{"msgtype": "m.text", "body": body})
	return err
}

// syncURL is the path and query of a /sync.
func syncURL(since, filterID string, timeoutMS int64) string {
	q := url.Values{}
	if since != "" {
		q.Set("since", since)
	}
	q.Set("filter", filterID)
	q.Set("timeout", strconv.FormatInt(timeoutMS, 10))
	return clientAPI + "/sync?" + q.Encode()
}

// syncResponse is the part of a /sync answer the load reads.
type syncResponse struct {
	NextBatch string `json:"next_batch"`
	Rooms     struct {
		Join map[string]struct {
			Timeline struct {
				Events []struct {
					Type    string `json:"type"`
					Content struct {
						Body string `json:"body"`
					} `json:"content"`
				} `json:"events"`
				Limited bool `json:"limited"`
			} `json:"timeline"`
		} `json:"join"`
	} `json:"rooms"`
}
