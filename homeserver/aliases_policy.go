package homeserver

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/matrix-org/gomatrixserverlib/spec"
	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"

	"github.com/switchboard-chat/switchboard/homeserver/storage"
)

// Alias policy. A room alias is a name people read and type, so two that
// look the same must not lead to different rooms:
//   - an alias is "#" localpart ":" server name (spec: Appendices, "Room
//     Aliases"), at most 255 bytes, valid UTF-8;
//   - its localpart holds no control characters (Unicode Cc), no format
//     characters (Cf: zero-width space and joiners, bidi controls, BOM),
//     no line or paragraph separators and no white space;
//   - a new alias must be in Unicode NFC; NFD and other decomposed
//     spellings are refused, not silently rewritten;
//   - a new alias is refused when its fold key (NFKC, case-folded, NFKC
//     again: "#Room", "#ROOM", "#ｒｏｏｍ" all give "#room") equals that of
//     an alias already in the directory. The key is stored with the alias
//     under a unique index (migration 007), so two concurrent requests
//     cannot both win. Aliases made before that migration have no key.

var errBadAliasForm = errors.New("an alias is #localpart:server.name")

// aliasFoldKey is the key under which two aliases count as one name.
func aliasFoldKey(alias string) string {
	return norm.NFKC.String(cases.Fold().String(norm.NFKC.String(alias)))
}

// checkAliasSyntax checks that alias is a well-formed room alias of any
// server, returning its localpart and server name.
func checkAliasSyntax(alias string) (local, server string, err error) {
	if len(alias) > 255 || !utf8.ValidString(alias) || !strings.HasPrefix(alias, "#") {
		return "", "", errBadAliasForm
	}
	local, server, ok := strings.Cut(alias[1:], ":")
	if !ok || local == "" {
		return "", "", errBadAliasForm
	}
	if _, _, ok := spec.ParseAndValidateServerName(spec.ServerName(server)); !ok {
		return "", "", errBadAliasForm
	}
	return local, server, nil
}

// checkNewAlias applies the whole policy to an alias this server is asked
// to create: 400 M_INVALID_PARAM when it breaks a rule.
func (s *Server) checkNewAlias(alias string) error {
	local, server, err := checkAliasSyntax(alias)
	if err != nil || server != s.cfg.ServerName {
		return errInvalidParam("alias must look like #name:%s", s.cfg.ServerName)
	}
	for _, r := range local {
		if unicode.In(r, unicode.Cc, unicode.Cf, unicode.Zl, unicode.Zp) || unicode.IsSpace(r) {
			return errInvalidParam("alias contains a control, format (zero-width) or space character (U+%04X)", r)
		}
	}
	if !norm.NFC.IsNormalString(alias) {
		return errInvalidParam("alias must be in Unicode normalisation form C (NFC)")
	}
	return nil
}

// setNewAlias stores an alias that passed checkNewAlias; an alias whose
// fold key is taken answers as if the alias itself were taken.
func (s *Server) setNewAlias(ctx context.Context, alias, roomID, creator string) error {
	return s.db.SetAliasWithKey(ctx, alias, aliasFoldKey(alias), roomID, creator)
}

// aliasTaken reports whether alias, or one with the same fold key, exists.
func (s *Server) aliasTaken(ctx context.Context, alias string) (bool, error) {
	if _, _, err := s.db.Alias(ctx, alias); err == nil {
		return true, nil
	} else if !errors.Is(err, storage.ErrNotFound) {
		return false, err
	}
	return s.db.AliasFoldKeyTaken(ctx, aliasFoldKey(alias))
}

func errBadAlias(format string, args ...any) *MatrixError {
	return merr(http.StatusBadRequest, "M_BAD_ALIAS", format, args...)
}

// checkCanonicalAlias checks new m.room.canonical_alias content: alias and
// each alt_aliases entry must be well-formed and point to roomID, else
// 400 M_BAD_ALIAS (spec: Client-Server API, "PUT
// /rooms/{roomId}/state/{eventType}/{stateKey}" and "m.room.canonical_alias").
// Aliases already in the room's current alt_aliases are not checked again,
// so that a room whose old alias was deleted can still change its state.
func (s *Server) checkCanonicalAlias(ctx context.Context, roomID string, content json.RawMessage) error {
	var c struct {
		Alias      json.RawMessage `json:"alias"`
		AltAliases json.RawMessage `json:"alt_aliases"`
	}
	if err := json.Unmarshal(content, &c); err != nil {
		return errBadJSON("%v", err)
	}
	var want []string
	if len(c.Alias) > 0 && string(c.Alias) != "null" {
		var a string
		if err := json.Unmarshal(c.Alias, &a); err != nil {
			return errInvalidParam("alias must be a string")
		}
		want = append(want, a)
	}
	if len(c.AltAliases) > 0 && string(c.AltAliases) != "null" {
		var alt []string
		if err := json.Unmarshal(c.AltAliases, &alt); err != nil {
			return errInvalidParam("alt_aliases must be a list of strings")
		}
		had := map[string]bool{}
		if prev, err := s.db.CurrentStateEvent(ctx, roomID, spec.MRoomCanonicalAlias, ""); err == nil {
			var p struct {
				AltAliases []string `json:"alt_aliases"`
			}
			_ = json.Unmarshal(contentOf(prev), &p)
			for _, a := range p.AltAliases {
				had[a] = true
			}
		}
		for _, a := range alt {
			if !had[a] {
				want = append(want, a)
			}
		}
	}
	if len(want) > 20 {
		return errBadAlias("too many aliases (at most 20 new ones at a time)")
	}
	for _, alias := range want {
		_, server, err := checkAliasSyntax(alias)
		if err != nil {
			return errBadAlias("%q is not a valid room alias", alias)
		}
		points := ""
		if server == s.cfg.ServerName {
			points, _, err = s.db.Alias(ctx, alias)
			if err != nil && !errors.Is(err, storage.ErrNotFound) {
				return err
			}
		} else {
			// A remote alias is asked of its server (spec: Server-Server
			// API, "GET /query/directory"); an unreachable one is refused.
			if points, _, err = s.queries.QueryAlias(ctx, alias); err != nil {
				s.log.Info("canonical alias: remote alias did not resolve", "alias", alias, "err", err)
				return errBadAlias("Room alias %s could not be resolved", alias)
			}
		}
		if points != roomID {
			return errBadAlias("Room alias %s does not point to this room", alias)
		}
	}
	return nil
}

// checkInitialCanonicalAlias checks createRoom's initial_state
// m.room.canonical_alias: a room that does not exist yet has no alias but
// the one room_alias_name makes for it.
func checkInitialCanonicalAlias(content json.RawMessage, own string) error {
	var c struct {
		Alias      *string  `json:"alias"`
		AltAliases []string `json:"alt_aliases"`
	}
	if err := json.Unmarshal(content, &c); err != nil {
		return errInvalidParam("initial m.room.canonical_alias: %v", err)
	}
	all := c.AltAliases
	if c.Alias != nil {
		all = append(all, *c.Alias)
	}
	for _, a := range all {
		if own == "" || a != own {
			return errBadAlias("Room alias %s does not point to the new room", a)
		}
	}
	return nil
}
