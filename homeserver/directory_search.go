package homeserver

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"
)

// maxDirectorySearch bounds how many published rooms a search looks at.
const maxDirectorySearch = 10000

// readPublicRoomsFilter reads a POST /publicRooms body, setting term to
// filter.generic_search_term, and returns the body for the paging fields.
func readPublicRoomsFilter(c echo.Context, term *string) (json.RawMessage, error) {
	var body json.RawMessage
	if err := readJSON(c, &body); err != nil {
		return nil, err
	}
	var f struct {
		Filter *struct {
			Term string `json:"generic_search_term"`
		} `json:"filter"`
	}
	if err := json.Unmarshal(body, &f); err != nil {
		return nil, errBadJSON("filter: %v", err)
	}
	if f.Filter != nil {
		*term = strings.TrimSpace(f.Filter.Term)
	}
	return body, nil
}

// searchPublicRooms is publicRoomsPage for POST /publicRooms with
// filter.generic_search_term: the rooms whose name, topic or canonical
// alias contain the term, case-insensitively (spec: Client-Server API,
// "POST /publicRooms", Filter), paged the same way.
func (s *Server) searchPublicRooms(ctx context.Context, term string, limit int, since string) (map[string]any, error) {
	offset := 0
	if since != "" {
		n, err := strconv.Atoi(strings.TrimPrefix(since, "o"))
		if err != nil || n < 0 {
			return nil, errInvalidParam("invalid since token")
		}
		offset = n
	}
	all, err := s.publicRoomsPage(ctx, maxDirectorySearch, "")
	if err != nil {
		return nil, err
	}
	needle := strings.ToLower(term)
	var hits []map[string]any
	for _, e := range all["chunk"].([]map[string]any) {
		for _, k := range []string{"name", "topic", "canonical_alias"} {
			if v, _ := e[k].(string); strings.Contains(strings.ToLower(v), needle) {
				hits = append(hits, e)
				break
			}
		}
	}
	chunk := []map[string]any{}
	if offset < len(hits) {
		chunk = hits[offset:min(offset+limit, len(hits))]
	}
	resp := map[string]any{"chunk": chunk, "total_room_count_estimate": len(hits)}
	if offset+len(chunk) < len(hits) {
		resp["next_batch"] = "o" + strconv.Itoa(offset+len(chunk))
	}
	if offset > 0 {
		resp["prev_batch"] = "o" + strconv.Itoa(max(offset-limit, 0))
	}
	return resp, nil
}
