package sync

import "context"

// typingStream is m.typing in each joined room's ephemeral section (spec:
// Client-Server API, "Typing Notifications"), from Ephemeral's serial.
type typingStream struct {
	eph Ephemeral
}

func (s *typingStream) ID() StreamID { return StreamTyping }

func (s *typingStream) Latest(context.Context, int64) int64 { return s.eph.TypingPosition() }

func (s *typingStream) Fill(_ context.Context, req *Request, from, to int64) (int64, bool, error) {
	news := false
	for i := range req.rooms {
		r, id := &req.rooms[i], req.rooms[i].id
		users, ok := s.eph.TypingSince(id, from)
		if !ok {
			continue
		}
		if users == nil {
			users = []string{}
		}
		r.jr.Ephemeral.Events = append(r.jr.Ephemeral.Events, map[string]any{"type": "m.typing", "content": map[string]any{"user_ids": users}})
		r.has = true
		req.include(id, r.jr)
		news = true
	}
	return to, news, nil
}
