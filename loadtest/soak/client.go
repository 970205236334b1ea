package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/switchboard-chat/switchboard/loadtest/mxclient"
)

// client is one user's session (mxclient's shared client) with the
// requests only this tool makes.
type client struct {
	mxclient.Client
}

// logout ends the session (spec: POST /logout), as a client that leaves
// properly does.
func (c *client) logout(ctx context.Context) error {
	_, err := c.Do(ctx, http.MethodPost, mxclient.ClientAPI+"/logout", map[string]any{})
	return err
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
	_, err := c.Do(ctx, http.MethodPost, mxclient.ClientAPI+"/join/"+url.PathEscape(roomID)+q, map[string]any{})
	return err
}

// sendEvent PUTs one room event and returns its event ID (spec: PUT
// /rooms/{roomId}/send/{eventType}/{txnId}).
func (c *client) sendEvent(ctx context.Context, roomID, typ, txnID string, content any) (string, error) {
	data, err := c.Do(ctx, http.MethodPut,
		mxclient.ClientAPI+"/rooms/"+url.PathEscape(roomID)+"/send/"+url.PathEscape(typ)+"/"+url.PathEscape(txnID), content)
	if err != nil {
		return "", err
	}
	var resp struct {
		EventID string `json:"event_id"`
	}
	if err := json.Unmarshal(data, &resp); err != nil || resp.EventID == "" {
		return "", fmt.Errorf("send: no event_id in %s", mxclient.Truncate(string(data), 200))
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
	data, err := c.Do(ctx, http.MethodGet, mxclient.ClientAPI+"/voip/turnServer", nil)
	if err != nil {
		return tc, err
	}
	if err := json.Unmarshal(data, &tc); err != nil || tc.Username == "" {
		return tc, fmt.Errorf("turnServer: no credentials in %s", mxclient.Truncate(string(data), 200))
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
	return mxclient.ClientAPI + "/sync?" + q.Encode()
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
				Events    []syncEvent `json:"events"`
				Limited   bool        `json:"limited"`
				PrevBatch string      `json:"prev_batch"`
			} `json:"timeline"`
		} `json:"join"`
		Invite map[string]json.RawMessage `json:"invite"`
	} `json:"rooms"`
}

func (c *client) sync(ctx context.Context, since string, timeoutMS int64) (*syncResponse, error) {
	data, err := c.Do(ctx, http.MethodGet, syncPath(since, timeoutMS), nil)
	if err != nil {
		return nil, err
	}
	var r syncResponse
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("sync: %w", err)
	}
	return &r, nil
}
