// Server-side key backup with matrix-js-sdk's Rust crypto (the WASM build
// it ships): alice's first device sends an encrypted message and backs its
// room key up to Switchboard (/room_keys); a second device of hers, which
// never received the key, restores it from the backup and decrypts the
// message.

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import * as sdk from "matrix-js-sdk";
import { login, register, sdkLog, startAndSync, useSwitchboard } from "./harness.mjs";
import { waitUntil } from "../lib/server.mjs";

const SEEN_WITHIN_MS = 30000;

const h = useSwitchboard();

/** A started client with Rust crypto for a fresh login of username. */
async function device(username, label) {
    const { client } = await login(h.server, h.clients, username, "password", label);
    await client.initRustCrypto({ useIndexedDB: false });
    await startAndSync(client, label, SEEN_WITHIN_MS);
    return client;
}

describe("key backup with matrix-js-sdk's Rust crypto", () => {
    it("a new device restores room keys from the backup and decrypts history", async () => {
        try {
            await register(h.server, "alice", "password");

            const first = await device("alice", "alice-1");
            const crypto1 = first.getCrypto();
            await crypto1.resetKeyBackup();
            const version = (await crypto1.getActiveSessionBackupVersion()) ?? (await crypto1.checkKeyBackupAndEnable())?.backupInfo?.version;
            assert.ok(version, "no active backup version after resetKeyBackup");

            const { room_id: roomId } = await first.createRoom({
                name: "secret",
                initial_state: [{ type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } }],
            });
            await waitUntil("the room is known as encrypted", SEEN_WITHIN_MS, async () => crypto1.isEncryptionEnabledInRoom(roomId));
            const { event_id: eventId } = await first.sendTextMessage(roomId, "only the backup knows");

            // The room key reaches the server's backup.
            await waitUntil("the room key in the backup", SEEN_WITHIN_MS, async () => {
                const res = await fetch(`${h.server.baseUrl}/_matrix/client/v3/room_keys/version/${version}`, {
                    headers: { Authorization: `Bearer ${first.getAccessToken()}` },
                });
                const body = await res.json();
                return res.status === 200 && body.count >= 1;
            });
            const backupKey = await crypto1.getSessionBackupPrivateKey();
            assert.ok(backupKey, "the first device has no backup key");

            // A second device: the message is undecryptable until restore.
            const second = await device("alice", "alice-2");
            const crypto2 = second.getCrypto();
            const before = new sdk.MatrixEvent(await second.fetchRoomEvent(roomId, eventId));
            await second.decryptEventIfNeeded(before);
            assert.ok(before.isDecryptionFailure(), "the second device could decrypt before restoring: the test proves nothing");
            await crypto2.storeSessionBackupPrivateKey(backupKey, version);
            const result = await crypto2.restoreKeyBackup();
            assert.ok(result.imported >= 1, `restored ${result.imported} of ${result.total} keys`);

            const raw = await second.fetchRoomEvent(roomId, eventId);
            const ev = new sdk.MatrixEvent(raw);
            await second.decryptEventIfNeeded(ev);
            assert.equal(ev.getType(), "m.room.message", `decryption failed: ${ev.decryptionFailureReason ?? ""}`);
            assert.equal(ev.getContent().body, "only the backup knows");
        } catch (err) {
            process.stderr.write(`\n--- switchboard stderr ---\n${h.server.stderr().slice(-8000)}\n--- sdk log ---\n${sdkLog.slice(-120).join("\n")}\n`);
            throw err;
        }
    });
});
