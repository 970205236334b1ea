package federation

import (
	"context"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/fclient"

	"github.com/switchboard-chat/switchboard/homeserver/storage"
)

// Client is the federation client that signs requests as this server
// (X-Matrix, spec: Server-Server API, "Request Authentication"), over
// Transport. The homeserver's two-server tests use it to speak as a peer.
func (f *Service) Client() fclient.FederationClient { return f.client }

// KeyRing verifies signatures with the server keys this server holds or
// fetches (spec: Server-Server API, "Retrieving server keys").
func (f *Service) KeyRing() gomatrixserverlib.JSONVerifier { return f.keyRing }

// ReceivePDU runs one PDU through the checks on receipt (spec:
// Server-Server API, "Checks performed on receipt of a PDU") and appends
// it as /send would, in its own write; it returns the refusal, if any.
func (f *Service) ReceivePDU(ctx context.Context, raw []byte) error {
	cp, err := f.checkPDU(ctx, raw, "")
	if err != nil {
		return err
	}
	return f.db.WriteTx(ctx, func(tx *storage.Tx) error { return f.appendChecked(ctx, tx, cp) })
}
