package homeserver

import (
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/switchboard-chat/switchboard/homeserver/storage"
)

// maxTypingTimeout caps how long a typing notification lasts.
const maxTypingTimeout = 2 * time.Minute

// putTyping implements PUT /rooms/{roomId}/typing/{userId}.
func (s *Server) putTyping(c echo.Context) error {
	d := device(c)
	if param(c, "userId") != d.UserID {
		return errForbidden("You may only set your own typing state")
	}
	var req struct {
		Typing  *bool `json:"typing"`
		Timeout int64 `json:"timeout"`
	}
	if err := readJSON(c, &req); err != nil {
		return err
	}
	if req.Typing == nil {
		return errMissingParam("typing is required")
	}
	roomID := param(c, "roomId")
	if err := s.requireJoined(c, roomID, d.UserID); err != nil {
		return err
	}
	timeout := min(time.Duration(req.Timeout)*time.Millisecond, maxTypingTimeout)
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	s.setTyping(roomID, d.UserID, *req.Typing, timeout)
	s.edus.SendTyping(c.Request().Context(), roomID, d.UserID, *req.Typing)
	return c.JSON(http.StatusOK, struct{}{})
}

// setTyping records a typing change and, when it changed anything, wakes
// the /sync requests of the room.
func (s *Server) setTyping(roomID, userID string, typing bool, timeout time.Duration) {
	if s.eph.SetTyping(roomID, userID, typing, timeout) {
		s.notifier.Notify(0, roomID)
	}
}

var receiptTypes = map[string]bool{"m.read": true, "m.read.private": true, "m.fully_read": true}

// postReceipt implements POST /rooms/{roomId}/receipt/{receiptType}/{eventId}.
func (s *Server) postReceipt(c echo.Context) error {
	var req struct {
		ThreadID string `json:"thread_id"`
	}
	if err := readJSON(c, &req); err != nil {
		return err
	}
	return s.storeReceipt(c, param(c, "receiptType"), param(c, "eventId"), req.ThreadID)
}

// postReadMarkers implements POST /rooms/{roomId}/read_markers.
func (s *Server) postReadMarkers(c echo.Context) error {
	var req struct {
		FullyRead   string `json:"m.fully_read"`
		Read        string `json:"m.read"`
		ReadPrivate string `json:"m.read.private"`
	}
	if err := readJSON(c, &req); err != nil {
		return err
	}
	for t, id := range map[string]string{"m.fully_read": req.FullyRead, "m.read": req.Read, "m.read.private": req.ReadPrivate} {
		if id == "" {
			continue
		}
		if err := s.storeReceipt(c, t, id, ""); err != nil {
			return err
		}
	}
	return c.JSON(http.StatusOK, struct{}{})
}

// storeReceipt records a receipt; m.fully_read is room account data, the
// private receipt is only ever shown to its owner.
func (s *Server) storeReceipt(c echo.Context, receiptType, eventID, threadID string) error {
	ctx := c.Request().Context()
	d := device(c)
	roomID := param(c, "roomId")
	if !receiptTypes[receiptType] {
		return errInvalidParam("unknown receipt type %q", receiptType)
	}
	if err := s.requireJoined(c, roomID, d.UserID); err != nil {
		return err
	}
	e, err := s.db.Event(ctx, eventID)
	if errors.Is(err, storage.ErrNotFound) || (err == nil && e.RoomID != roomID) {
		return errNotFound("Unknown event %s", eventID)
	}
	if err != nil {
		return err
	}
	if receiptType == "m.fully_read" {
		content, _ := json.Marshal(map[string]string{"event_id": eventID})
		_, err = s.db.PutAccountData(ctx, d.UserID, roomID, "m.fully_read", content)
	} else if receiptType == "m.read" {
		_, err = s.db.PutReceipt(ctx, storage.Receipt{RoomID: roomID, UserID: d.UserID, Type: receiptType,
			ThreadID: threadID, EventID: eventID, TS: s.nowMS()})
		if err == nil {
			s.edus.SendReceipt(ctx, roomID, d.UserID, eventID, threadID, s.nowMS())
		}
	} else {
		// m.read.private: kept as room account data so only its owner sees it.
		content, _ := json.Marshal(map[string]string{"event_id": eventID})
		_, err = s.db.PutAccountData(ctx, d.UserID, roomID, "m.read.private", content)
	}
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, struct{}{})
}

// maxToDeviceMessages bounds one sendToDevice request.
const maxToDeviceMessages = 1000

// sendToDevice implements PUT /sendToDevice/{eventType}/{txnId} (spec:
// "Send-to-Device messaging"). Messages to "*" go to every device.
func (s *Server) sendToDevice(c echo.Context) error {
	d := device(c)
	if err := s.sendLimit.allow(d.UserID); err != nil {
		return err
	}
	body, err := readContent(c)
	if err != nil {
		return err
	}
	var req struct {
		Messages map[string]map[string]json.RawMessage `json:"messages"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return errBadJSON("%v", err)
	}
	evType := param(c, "type")
	var msgs []storage.ToDevice
	for userID, devices := range req.Messages {
		if _, _, ok := splitUserID(userID); !ok {
			return errInvalidParam("invalid user ID %q", userID)
		}
		for deviceID, content := range devices {
			if len(content) == 0 || content[0] != '{' {
				return errBadJSON("message content must be an object")
			}
			msgs = append(msgs, storage.ToDevice{UserID: userID, DeviceID: deviceID, Sender: d.UserID, Type: evType, Content: content})
		}
	}
	if len(msgs) > maxToDeviceMessages {
		return errTooLarge("at most %d messages per request", maxToDeviceMessages)
	}
	// The transaction ID makes retries idempotent.
	fresh, err := s.db.ClaimTxn(c.Request().Context(), d.UserID, d.DeviceID, "todevice:"+param(c, "txnId"))
	if err != nil {
		return err
	}
	if fresh && len(msgs) > 0 {
		local, remote := s.splitLocal(msgs)
		local = s.deliverToServices(local)
		if len(local) > 0 {
			if _, err := s.db.PutToDevice(c.Request().Context(), local); err != nil {
				return err
			}
		}
		if len(remote) > 0 {
			if err := s.edus.SendToDevice(c.Request().Context(), remote); err != nil {
				return err
			}
		}
	}
	return c.JSON(http.StatusOK, struct{}{})
}

func (s *Server) splitLocal(msgs []storage.ToDevice) (local, remote []storage.ToDevice) {
	for _, m := range msgs {
		if _, server, _ := splitUserID(m.UserID); server == s.cfg.ServerName {
			local = append(local, m)
		} else {
			remote = append(remote, m)
		}
	}
	return local, remote
}

// getAccountData implements GET /user/{userId}[/rooms/{roomId}]/account_data/{type}.
func (s *Server) getAccountData(c echo.Context) error {
	d := device(c)
	if param(c, "userId") != d.UserID {
		return errForbidden("You may only read your own account data")
	}
	content, err := s.db.GetAccountData(c.Request().Context(), d.UserID, param(c, "roomId"), param(c, "type"))
	if errors.Is(err, storage.ErrNotFound) {
		return errNotFound("No account data of that type")
	}
	if err != nil {
		return err
	}
	return c.JSONBlob(http.StatusOK, content)
}

// putAccountData implements PUT /user/{userId}[/rooms/{roomId}]/account_data/{type}.
func (s *Server) putAccountData(c echo.Context) error {
	d := device(c)
	if param(c, "userId") != d.UserID {
		return errForbidden("You may only set your own account data")
	}
	content, err := readContent(c)
	if err != nil {
		return err
	}
	evType := param(c, "type")
	if evType == "m.fully_read" || evType == "m.push_rules" {
		return merr(http.StatusMethodNotAllowed, "M_BAD_JSON", "%s is set through its own API", evType)
	}
	if _, err := s.db.PutAccountData(c.Request().Context(), d.UserID, param(c, "roomId"), evType, content); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, struct{}{})
}
