package federation

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/fclient"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/switchboard-chat/switchboard/homeserver/rooms"
	"github.com/switchboard-chat/switchboard/homeserver/storage"
)

// inboundTxn is the body of PUT /_matrix/federation/v1/send/{txnId}.
type inboundTxn struct {
	Origin         string                  `json:"origin"`
	OriginServerTS int64                   `json:"origin_server_ts"`
	PDUs           []json.RawMessage       `json:"pdus"`
	EDUs           []gomatrixserverlib.EDU `json:"edus"`
}

// send implements PUT /_matrix/federation/v1/send/{txnId} (spec:
// Server-Server API, "Transactions"): each PDU is checked and stored on its
// own and gets its own result; EDUs are applied; a repeated transaction ID
// from the same origin gets the first answer again.
func (f *Service) send(c echo.Context) error {
	ctx := c.Request().Context()
	origin := fedOrigin(c)
	txnID := param(c, "txnId")
	var txn inboundTxn
	if err := json.Unmarshal(fedContent(c), &txn); err != nil {
		return errBadJSON("%v", err)
	}
	if txn.Origin != "" && txn.Origin != origin {
		return errUnauthorized("transaction origin %q does not match the signing server", txn.Origin)
	}
	if len(txn.PDUs) > maxTxnPDUs || len(txn.EDUs) > maxTxnEDUs {
		return errBadJSON("at most %d PDUs and %d EDUs per transaction", maxTxnPDUs, maxTxnEDUs)
	}
	if resp, ok, err := f.db.InboundTxn(ctx, origin, txnID); err != nil {
		return err
	} else if ok {
		return c.JSONBlob(http.StatusOK, resp)
	}
	results := map[string]fclient.PDUResult{}
	for _, raw := range txn.PDUs {
		id, err := f.receivePDU(ctx, origin, raw, "", rooms.Pushed)
		if err != nil {
			f.log.Info("inbound PDU refused", "origin", origin, "event_id", id, "err", err)
			if id != "" {
				results[id] = fclient.PDUResult{Error: err.Error()}
			}
			continue
		}
		results[id] = fclient.PDUResult{}
	}
	for _, edu := range txn.EDUs {
		f.receiveEDU(ctx, origin, edu)
	}
	resp, err := json.Marshal(fclient.RespSend{PDUs: results})
	if err != nil {
		return err
	}
	if err := f.db.RecordInboundTxn(ctx, origin, txnID, resp, f.nowMS()); err != nil {
		return err
	}
	return c.JSONBlob(http.StatusOK, resp)
}

// directToDevice is the content of an m.direct_to_device EDU (spec:
// Server-Server API, "Send-to-device messaging").
type directToDevice struct {
	Sender    string                                `json:"sender"`
	Type      string                                `json:"type"`
	MessageID string                                `json:"message_id"`
	Messages  map[string]map[string]json.RawMessage `json:"messages"`
}

// receiveEDU applies one EDU from origin. EDUs have no result; bad ones are
// logged and dropped.
func (f *Service) receiveEDU(ctx context.Context, origin string, edu gomatrixserverlib.EDU) {
	switch edu.Type {
	case spec.MDirectToDevice:
		var d directToDevice
		if err := json.Unmarshal(edu.Content, &d); err != nil {
			f.log.Info("bad m.direct_to_device EDU", "origin", origin, "err", err)
			return
		}
		if rooms.ServerOf(d.Sender) != origin || d.Type == "" {
			f.log.Info("m.direct_to_device EDU with a sender of another server", "origin", origin, "sender", d.Sender)
			return
		}
		var msgs []storage.ToDevice
		for userID, devices := range d.Messages {
			if !f.isLocalUser(userID) {
				continue
			}
			for deviceID, content := range devices {
				if len(content) == 0 || content[0] != '{' {
					continue
				}
				msgs = append(msgs, storage.ToDevice{UserID: userID, DeviceID: deviceID, Sender: d.Sender, Type: d.Type, Content: content})
			}
		}
		if msgs = f.local.DeliverToServices(msgs); len(msgs) == 0 {
			return
		}
		if _, err := f.db.PutToDevice(ctx, msgs); err != nil {
			f.log.Warn("storing federated to-device messages failed", "origin", origin, "err", err)
		}
	case spec.MTyping:
		var t struct {
			RoomID string `json:"room_id"`
			UserID string `json:"user_id"`
			Typing bool   `json:"typing"`
		}
		if err := json.Unmarshal(edu.Content, &t); err != nil || rooms.ServerOf(t.UserID) != origin {
			return
		}
		if m, err := f.db.Membership(ctx, t.RoomID, t.UserID); err != nil || m != "join" {
			return
		}
		f.eph.SetTyping(t.RoomID, t.UserID, t.Typing, 30*time.Second)
	case spec.MReceipt:
		f.receiveReceipts(ctx, origin, json.RawMessage(edu.Content))
	case eduDeviceListUpdate, eduSigningKeyUpdate:
		f.receiveDeviceListEDU(ctx, origin, edu)
	case eduPresence:
		f.receivePresenceEDU(ctx, origin, edu.Content)
	default:
		f.log.Debug("EDU ignored", "origin", origin, "type", edu.Type)
	}
}

// SendToDevice queues to-device messages for users of other servers
// as one m.direct_to_device EDU per server and sender.
func (f *Service) SendToDevice(ctx context.Context, msgs []storage.ToDevice) error {
	type key struct{ server, sender, typ string }
	grouped := map[key]*directToDevice{}
	for _, m := range msgs {
		k := key{rooms.ServerOf(m.UserID), m.Sender, m.Type}
		if k.server == "" {
			continue
		}
		d := grouped[k]
		if d == nil {
			d = &directToDevice{Sender: m.Sender, Type: m.Type, MessageID: randomString(12), Messages: map[string]map[string]json.RawMessage{}}
			grouped[k] = d
		}
		if d.Messages[m.UserID] == nil {
			d.Messages[m.UserID] = map[string]json.RawMessage{}
		}
		d.Messages[m.UserID][m.DeviceID] = json.RawMessage(m.Content)
	}
	byDest := map[string][][]byte{}
	for k, d := range grouped {
		content, err := json.Marshal(d)
		if err != nil {
			return err
		}
		edu, err := json.Marshal(gomatrixserverlib.EDU{Type: spec.MDirectToDevice, Origin: f.serverName, Destination: k.server, Content: content})
		if err != nil {
			return err
		}
		byDest[k.server] = append(byDest[k.server], edu)
	}
	return f.queue.enqueueEDUs(ctx, byDest)
}

// sendRoomEDU queues an EDU for every other server in roomID. Failures
// are logged: EDUs are best effort.
func (f *Service) sendRoomEDU(ctx context.Context, roomID, eduType string, content any) {
	servers, err := f.roomServers(ctx, roomID)
	if err != nil {
		f.log.Warn("EDU destinations", "room_id", roomID, "err", err)
		return
	}
	servers = slices.DeleteFunc(servers, func(s string) bool { return s == f.serverName })
	if err := f.queueEDUs(ctx, eduType, servers, content); err != nil {
		f.log.Warn("queueing an EDU failed", "room_id", roomID, "type", eduType, "err", err)
	}
}

// queueEDUs queues, for each of dests, one EDU of eduType per content.
func (f *Service) queueEDUs(ctx context.Context, eduType string, dests []string, contents ...any) error {
	if len(dests) == 0 {
		return nil
	}
	byDest := make(map[string][][]byte, len(dests))
	for _, content := range contents {
		c, err := json.Marshal(content)
		if err != nil {
			return err
		}
		for _, d := range dests {
			edu, err := json.Marshal(gomatrixserverlib.EDU{Type: eduType, Origin: f.serverName, Destination: d, Content: c})
			if err != nil {
				return err
			}
			byDest[d] = append(byDest[d], edu)
		}
	}
	return f.queue.enqueueEDUs(ctx, byDest)
}

// SendTyping tells the room's other servers that userID is (not) typing
// (spec: Server-Server API, "Typing Notifications").
func (f *Service) SendTyping(ctx context.Context, roomID, userID string, typing bool) {
	f.sendRoomEDU(ctx, roomID, spec.MTyping, map[string]any{"room_id": roomID, "user_id": userID, "typing": typing})
}

// SendReceipt tells the room's other servers of a public read receipt
// (spec: Server-Server API, "Receipts").
func (f *Service) SendReceipt(ctx context.Context, roomID, userID, eventID, threadID string, ts int64) {
	data := map[string]any{"ts": ts}
	if threadID != "" {
		data["thread_id"] = threadID
	}
	f.sendRoomEDU(ctx, roomID, spec.MReceipt, map[string]any{
		roomID: map[string]any{"m.read": map[string]any{userID: map[string]any{"event_ids": []string{eventID}, "data": data}}},
	})
}

// receiveReceipts stores the m.read receipts of an m.receipt EDU from
// origin's joined users.
func (f *Service) receiveReceipts(ctx context.Context, origin string, content json.RawMessage) {
	var byRoom map[string]map[string]map[string]struct {
		EventIDs []string `json:"event_ids"`
		Data     struct {
			TS       int64  `json:"ts"`
			ThreadID string `json:"thread_id"`
		} `json:"data"`
	}
	if err := json.Unmarshal(content, &byRoom); err != nil {
		f.log.Info("bad m.receipt EDU", "origin", origin, "err", err)
		return
	}
	for roomID, types := range byRoom {
		for userID, r := range types["m.read"] {
			if rooms.ServerOf(userID) != origin || len(r.EventIDs) == 0 {
				continue
			}
			if m, err := f.db.Membership(ctx, roomID, userID); err != nil || m != "join" {
				continue
			}
			if e, err := f.db.Event(ctx, r.EventIDs[0]); err != nil || e.RoomID != roomID {
				continue
			}
			if _, err := f.db.PutReceipt(ctx, storage.Receipt{RoomID: roomID, UserID: userID, Type: "m.read",
				ThreadID: r.Data.ThreadID, EventID: r.EventIDs[0], TS: r.Data.TS}); err != nil {
				f.log.Warn("storing a federated receipt failed", "origin", origin, "err", err)
			}
		}
	}
}
