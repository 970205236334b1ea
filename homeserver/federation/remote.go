package federation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"

	"github.com/matrix-org/gomatrix"
	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/fclient"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/switchboard-chat/switchboard/homeserver/matrixerr"
	"github.com/switchboard-chat/switchboard/homeserver/rooms"
)

// remoteError turns the failure of a request to another server into the
// error our client sees (spec: Client-Server API, "Standard error
// response"):
//   - a Matrix error the remote server answered keeps its errcode and
//     message, and its status when it is a client error (403 M_FORBIDDEN
//     for a ban, 400 M_INCOMPATIBLE_ROOM_VERSION, 404 M_NOT_FOUND); a
//     remote 5xx becomes 502;
//   - a server that could not be reached (DNS, dial, TLS, timeout, an
//     address the allow-list refuses) is 502 "could not reach <server>":
//     the transport detail (addresses, the resolver) goes to the log only;
//   - an answer we could not use is 502 naming the server.
//
// A *matrixerr.Error (our own check of the answer) is returned as it is, and so
// is a cancelled request context: the client went away (http.go).
func (f *Service) remoteError(ctx context.Context, server, op string, err error) error {
	if err == nil {
		return nil
	}
	var me *matrixerr.Error
	if errors.As(err, &me) {
		return me
	}
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return err
	}
	var he gomatrix.HTTPError
	if errors.As(err, &he) {
		var re gomatrix.RespError
		if errors.As(he.WrappedError, &re) && re.ErrCode != "" {
			status := he.Code
			if status < 400 || status >= 500 {
				status = http.StatusBadGateway
			}
			msg := re.Err
			if msg == "" {
				msg = re.ErrCode
			}
			out := merr(status, re.ErrCode, "%s (answer of %s to %s)", plainText(msg, 300), server, op)
			// Fields the spec adds to some errors (room_version on
			// M_INCOMPATIBLE_ROOM_VERSION) travel with them.
			var extra struct {
				RoomVersion string `json:"room_version"`
			}
			if json.Unmarshal(he.Contents, &extra) == nil && extra.RoomVersion != "" {
				out = out.WithExtra("room_version", plainText(extra.RoomVersion, 32))
			}
			f.log.Info("remote server refused", "server", server, "op", op, "status", he.Code, "errcode", re.ErrCode)
			return out
		}
		f.log.Info("remote server answered without a Matrix error", "server", server, "op", op, "status", he.Code)
		return merr(http.StatusBadGateway, "M_UNKNOWN", "%s answered %s with HTTP %d", server, op, he.Code)
	}
	if unreachable(err) {
		f.log.Info("remote server unreachable", "server", server, "op", op, "err", err)
		return merr(http.StatusBadGateway, "M_UNKNOWN", "could not reach %s", server)
	}
	f.log.Info("remote server sent an unusable answer", "server", server, "op", op, "err", err)
	return merr(http.StatusBadGateway, "M_UNKNOWN", "%s sent an answer to %s that could not be used", server, op)
}

// unreachable reports whether err is a transport failure: the request did
// not get an HTTP answer.
func unreachable(err error) bool {
	var ue *url.Error
	var ne net.Error
	var de *net.DNSError
	return errors.As(err, &ue) || errors.As(err, &ne) || errors.As(err, &de) ||
		errors.Is(err, ErrForbiddenAddress) || errors.Is(err, context.DeadlineExceeded)
}

// plainText bounds a remote message and drops control characters, so that
// what another server says reaches our client as one readable line.
func plainText(s string, limit int) string {
	out := make([]rune, 0, len(s))
	for _, r := range s {
		if len(out) >= limit {
			out = append(out, '…')
			break
		}
		if r < 0x20 || r == 0x7f {
			r = ' '
		}
		out = append(out, r)
	}
	return string(out)
}

// isRefusal reports whether err is a remote server's considered answer
// (a 4xx Matrix error) rather than a failure to reach it: a refusal from
// one server is worth more to the client than "could not reach" another.
func isRefusal(err error) bool {
	var me *matrixerr.Error
	return errors.As(err, &me) && me.Status >= 400 && me.Status < 500
}

// makeJoin asks server for a join template (spec: Server-Server API, "GET
// /_matrix/federation/v1/make_join"), naming the room versions we support
// in ver, so that a server whose room we cannot join answers 400
// M_INCOMPATIBLE_ROOM_VERSION.
func (f *Service) makeJoinRequest(ctx context.Context, server, roomID, userID string) (fclient.RespMakeJoin, error) {
	q := url.Values{}
	for v := range rooms.SupportedVersions {
		q.Add("ver", v)
	}
	path := "/_matrix/federation/v1/make_join/" + url.PathEscape(roomID) + "/" + url.PathEscape(userID) + "?" + q.Encode()
	req := fclient.NewFederationRequest(http.MethodGet, f.origin(), spec.ServerName(server), path)
	var res fclient.RespMakeJoin
	if err := req.Sign(f.origin(), gomatrixserverlib.KeyID(f.keyID), f.signingKey); err != nil {
		return res, fmt.Errorf("%w: sign make_join: %v", ErrFederation, err)
	}
	hr, err := req.HTTPRequest()
	if err != nil {
		return res, fmt.Errorf("%w: make_join request: %v", ErrFederation, err)
	}
	err = f.client.DoRequestAndParseResponse(ctx, hr, &res)
	return res, err
}
