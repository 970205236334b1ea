package livekit

import (
	"time"

	"github.com/livekit/protocol/livekit"

	"github.com/switchboard-chat/switchboard/sfu"
)

// Connection quality (LiveKit's ConnectionQualityUpdate): every
// QualityInterval each session is sent the quality of every participant
// of its conference, its own included and the native focus's
// participants under their LiveKit SIDs (foreign.go), from what the SFU
// measures of the media each publishes (sfu.Quality: the fraction lost
// and the jitter of its receiver reports, RFC 3550 section 6.4.1).

// connectionQuality grades a participant's sfu.Quality:
//   - POOR when 10 % or more of a stream was lost in the last interval;
//   - GOOD when 2 % or more was, or a stream's jitter is 30 ms or more;
//   - EXCELLENT otherwise, and for a participant that publishes nothing
//     (nothing of it can be faulted).
//
// Only loss makes POOR: jitter on a busy server says as much about the
// server as about the client. The score is a MOS-like 1 to 5, 5 less 30
// per unit of loss and 1 per 50 ms of jitter.
func connectionQuality(q sfu.Quality) (livekit.ConnectionQuality, float32) {
	if q.Streams == 0 {
		return livekit.ConnectionQuality_EXCELLENT, 5
	}
	score := 5 - 30*q.Loss - q.Jitter.Seconds()*20
	score = min(max(score, 1), 5)
	switch {
	case q.Loss >= 0.10:
		return livekit.ConnectionQuality_POOR, float32(score)
	case q.Loss >= 0.02 || q.Jitter >= 30*time.Millisecond:
		return livekit.ConnectionQuality_GOOD, float32(score)
	}
	return livekit.ConnectionQuality_EXCELLENT, float32(score)
}

// watchQuality sends the connection quality updates until stop is
// closed.
func (s *Server) watchQuality(stop <-chan struct{}) {
	t := time.NewTicker(s.cfg.QualityInterval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		s.mu.Lock()
		rooms := make([]*room, 0, len(s.rooms))
		for _, r := range s.rooms {
			rooms = append(rooms, r)
		}
		s.mu.Unlock()
		for _, r := range rooms {
			r.sendQuality()
		}
	}
}

// sendQuality sends each session of r that is in the SFU the quality of
// everyone in its conference.
func (r *room) sendQuality() {
	byConf := map[*sfu.Conference]*livekit.SignalResponse{}
	for _, ss := range r.list(nil) {
		ss.mu.Lock()
		p := ss.p
		ss.mu.Unlock()
		if p == nil {
			continue
		}
		conf := p.Conference()
		msg := byConf[conf]
		if msg == nil {
			up := &livekit.ConnectionQualityUpdate{}
			for pid, q := range conf.Quality() {
				cq, score := connectionQuality(q)
				up.Updates = append(up.Updates, &livekit.ConnectionQualityInfo{
					ParticipantSid: speakerSID(pid), Quality: cq, Score: score})
			}
			msg = &livekit.SignalResponse{Message: &livekit.SignalResponse_ConnectionQuality{ConnectionQuality: up}}
			byConf[conf] = msg
		}
		ss.send(msg)
	}
}
