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

func (c *client) join(ctx context.Context, roomID string) error {
	_, err := c.Do(ctx, http.MethodPost, mxclient.ClientAPI+"/rooms/"+url.PathEscape(roomID)+"/join", map[string]any{})
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
	data, err := c.Do(ctx, http.MethodPost, mxclient.ClientAPI+"/user/"+url.PathEscape(c.User)+"/filter", syncFilter)
	if err != nil {
		return "", err
	}
	var resp struct {
		FilterID string `json:"filter_id"`
	}
	if err := json.Unmarshal(data, &resp); err != nil || resp.FilterID == "" {
		return "", fmt.Errorf("filter: no filter_id in %s", mxclient.Truncate(string(data), 200))
	}
	return resp.FilterID, nil
}

// send PUTs one m.room.message with the given transaction ID.
func (c *client) send(ctx context.Context, roomID, txnID, body string) error {
	_, err := c.Do(ctx, http.MethodPut,
		mxclient.ClientAPI+"/rooms/"+url.PathEscape(roomID)+"/send/m.room.message/"+url.PathEscape(txnID),
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
	return mxclient.ClientAPI + "/sync?" + q.Encode()
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
