// Switchboard's browser client: sign in, rooms, timeline, and calls. Plain
// ES modules, no build step; it talks to the server only through the Matrix
// Client-Server API and WebRTC.

import { Client, MatrixError, explainAuthError, login, normalizeBaseUrl, register } from "./matrix.js";
import { Call, summarizeStats } from "./call.js";
import { CallView, avatar } from "./callview.js";
import { GroupCall, callMembers } from "./group.js";
import { explainMediaError, getScreen, listDevices, startRinging, stopRinging } from "./media.js";

const $ = (id) => document.getElementById(id);
const SESSION_KEY = "switchboard.session";
const SETTINGS_KEY = "switchboard.settings";

/** Per-device settings: picked camera and microphone, relay-only calls. */
const settings = { camId: "", micId: "", relayOnly: false, quality: "hd" };
try {
    Object.assign(settings, JSON.parse(localStorage.getItem(SETTINGS_KEY) || "{}"));
} catch {
    // unreadable settings: keep the defaults
}
function saveSettings() {
    localStorage.setItem(SETTINGS_KEY, JSON.stringify(settings));
}

let client;
let currentRoomId;
let call; // the 1:1 call, if any
let group; // the group call, if any
let incomingCall;
const view = new CallView();
let toastTimer;

// ---- small helpers ----

function toast(text, { info = false, ms = 6000 } = {}) {
    const t = $("toast");
    t.textContent = text;
    t.classList.toggle("info", info);
    t.style.top = `${toastTop()}px`;
    t.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => (t.hidden = true), ms);
}

/**
 * Where the toast goes: just below the lowest header showing (the top bar,
 * the room's name and call buttons, or the call's title), so that it never
 * hides them.
 */
function toastTop() {
    let top = 16;
    for (const el of document.querySelectorAll(".topbar, .room-head, .call-head")) {
        const r = el.getBoundingClientRect();
        if (r.height > 0 && r.bottom < window.innerHeight / 2) top = Math.max(top, r.bottom + 8);
    }
    return Math.round(top);
}

/** The largest event a server accepts (spec: "Size limits", 65536 bytes). */
const MAX_EVENT_KB = 64;

/**
 * Explains an error in plain words. The server's own message is shown only
 * for refusals it words for people (M_FORBIDDEN, M_NOT_FOUND); codes that
 * carry a library's text (M_TOO_LARGE, M_BAD_JSON, 5xx) get ours.
 */
function errText(err) {
    if (err instanceof MatrixError) {
        if (err.network) return err.message;
        switch (err.errcode) {
            case "M_FORBIDDEN":
                return `Not allowed: ${err.message}`;
            case "M_NOT_FOUND":
                return `Not found: ${err.message}`;
            case "M_LIMIT_EXCEEDED":
                return "Slow down: the server asked to wait a moment.";
            case "M_TOO_LARGE":
                return `This is too large for the server (limit ${MAX_EVENT_KB} KB).`;
            case "M_UNKNOWN_TOKEN":
            case "M_MISSING_TOKEN":
                return "You were signed out. Sign in again.";
            case "M_NOT_JSON":
            case "M_BAD_JSON":
                return "The server could not read this request. Reload the page and try again.";
        }
        if (err.status === 413) return `This is too large for the server (limit ${MAX_EVENT_KB} KB).`;
        if (err.status >= 500) return `The server had a problem (HTTP ${err.status}). Try again in a moment.`;
        return err.message;
    }
    return String(err?.message ?? err);
}

/** Runs fn with button disabled, showing errors as a toast. */
async function busy(button, fn) {
    button.disabled = true;
    try {
        return await fn();
    } catch (err) {
        toast(errText(err));
    } finally {
        button.disabled = false;
    }
}

function timeOf(ts) {
    const d = new Date(ts);
    return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

// ---- sign in ----

function showLogin(message = "") {
    $("main-view").hidden = true;
    $("login-view").hidden = false;
    if (!$("server").value) $("server").value = location.origin;
    $("login-error").textContent = message;
    $("username").focus();
}

async function doAuth(mode) {
    const err = $("login-error");
    err.textContent = "";
    const username = $("username").value.trim().replace(/^@/, "");
    const password = $("password").value;
    if (!username || !password) {
        err.textContent = "Enter a username and a password.";
        return;
    }
    let baseUrl;
    try {
        baseUrl = normalizeBaseUrl($("server").value);
    } catch (e) {
        err.textContent = e.message;
        return;
    }
    const buttons = [$("signin"), $("register")];
    buttons.forEach((b) => (b.disabled = true));
    err.textContent = mode === "login" ? "Signing in…" : "Creating your account…";
    try {
        const user = username.includes(":") ? username.split(":")[0] : username;
        const session =
            mode === "login" ? await login(baseUrl, username.includes(":") ? `@${username}` : user, password) : await register(baseUrl, user, password, $("regtoken").value.trim());
        sessionStorage.setItem(SESSION_KEY, JSON.stringify(session));
        $("password").value = "";
        err.textContent = "";
        await startSession(session);
    } catch (e) {
        err.textContent = explainAuthError(e, mode);
        if (e.errcode === "SB_NEED_TOKEN") $("token-box").open = true;
    } finally {
        buttons.forEach((b) => (b.disabled = false));
    }
}

async function startSession(session) {
    client = new Client(session);
    client.addEventListener("rooms", renderRooms);
    client.addEventListener("timeline", onTimeline);
    client.addEventListener("state", onState);
    client.addEventListener("todevice", (e) => group?.onToDevice(e.detail));
    client.addEventListener("connection", onConnection);
    $("login-view").hidden = true;
    $("main-view").hidden = false;
    $("me-name").textContent = session.userId;
    setConn("Connecting…", "");
    try {
        await client.start();
    } catch (err) {
        client.stop();
        client = undefined;
        if (err instanceof MatrixError && err.errcode === "M_UNKNOWN_TOKEN") {
            sessionStorage.removeItem(SESSION_KEY);
            showLogin("Your session ended. Sign in again.");
        } else {
            showLogin(errText(err));
        }
        return;
    }
    if (client.displayName) $("me-name").textContent = `${client.displayName} (${session.userId})`;
    setConn("", "");
    renderRooms();
}

function setConn(text, cls) {
    const c = $("conn");
    c.textContent = text;
    c.className = `conn ${cls}`;
}

function onConnection(e) {
    const d = e.detail;
    if (d.fatal) {
        sessionStorage.removeItem(SESSION_KEY);
        showLogin(d.error);
        return;
    }
    if (d.ok) {
        setConn("Back online", "good");
        setTimeout(() => client?.connected && setConn("", ""), 3000);
    } else {
        setConn(`Offline: cannot reach the server. Retrying in ${Math.ceil(d.retryMs / 1000)} s…`, "bad");
    }
}

async function signOut() {
    endCalls();
    try {
        await client?.logout();
    } catch {
        // the session is forgotten here either way
    }
    client?.stop();
    client = undefined;
    currentRoomId = undefined;
    sessionStorage.removeItem(SESSION_KEY);
    showLogin("");
}

// ---- rooms ----

function renderRooms() {
    if (!client) return;
    const list = $("room-list");
    const rooms = client.roomList();
    $("no-rooms").hidden = rooms.length > 0;
    const items = rooms.map((room) => {
        const li = document.createElement("li");
        const b = document.createElement("button");
        b.type = "button";
        const name = room.displayName(client.userId);
        b.append(avatar(name));
        const n = document.createElement("span");
        n.className = "rname";
        n.textContent = name;
        b.append(n);
        if (room.membership === "invite") {
            const s = document.createElement("span");
            s.className = "badge inv";
            s.textContent = "invited";
            b.append(s);
        } else if (callMembers(room).length > 0) {
            const s = document.createElement("span");
            s.className = "badge live";
            s.textContent = `call · ${callMembers(room).length}`;
            b.append(s);
        } else if (room.unread > 0 && room.id !== currentRoomId) {
            const s = document.createElement("span");
            s.className = "badge";
            s.textContent = String(room.unread);
            b.append(s);
        }
        b.setAttribute("aria-current", String(room.id === currentRoomId));
        b.setAttribute("aria-label", `${name}${room.membership === "invite" ? " (invitation)" : ""}`);
        b.dataset.roomId = room.id;
        b.addEventListener("click", () => openRoom(room.id));
        li.append(b);
        return li;
    });
    list.replaceChildren(...items);
    if (currentRoomId) {
        if (!client.rooms.has(currentRoomId)) closeRoom();
        else renderRoomHead();
    }
}

function openRoom(roomId) {
    currentRoomId = roomId;
    const room = client.rooms.get(roomId);
    if (room) room.unread = 0;
    $("room-empty").hidden = true;
    $("room-pane").hidden = false;
    $("main-view").classList.add("in-room");
    renderRooms();
    renderTimeline();
    if (room?.membership === "join") $("message").focus();
}

function closeRoom() {
    currentRoomId = undefined;
    $("room-pane").hidden = true;
    $("room-empty").hidden = false;
    $("main-view").classList.remove("in-room");
    renderRooms();
}

function renderRoomHead() {
    const room = client.rooms.get(currentRoomId);
    if (!room) return;
    $("room-name").textContent = room.displayName(client.userId);
    const joined = room.members("join");
    const invited = room.members("invite");
    const invitedText = invited.length ? `, ${invited.length} invited` : "";
    $("room-sub").textContent = room.membership === "invite" ? "Invitation" : `${joined.length} member${joined.length === 1 ? "" : "s"}${invitedText}`;
    const isInvite = room.membership === "invite";
    $("invite-banner").hidden = !isInvite;
    if (isInvite) $("invite-text").textContent = `${room.memberName(room.inviter) || room.inviter} invited you to this room.`;
    $("composer").hidden = isInvite;
    $("invite-form").hidden = isInvite;
    const others = joined.filter((u) => u !== client.userId);
    const canOneToOne = !isInvite && others.length === 1 && joined.length === 2;
    for (const id of ["voice-call", "video-call"]) {
        $(id).hidden = !canOneToOne;
        $(id).disabled = !!call || !!group;
    }
    $("group-call").hidden = isInvite;
    $("group-call").disabled = !!group || !!call;
    const members = callMembers(room);
    const gb = $("group-banner");
    gb.hidden = members.length === 0 || (group && group.roomId === room.id);
    if (!gb.hidden) {
        const names = members.map((m) => room.memberName(m.userId));
        $("group-banner-text").textContent = `Group call in progress: ${names.join(", ")}.`;
    }
    $("group-call").textContent = members.length > 0 ? "Join call" : "Group call";
    $("group-call").setAttribute("aria-label", members.length > 0 ? "Join the group call" : "Start a group call");
}

function describe(ev, room) {
    const who = room.memberName(ev.sender);
    const c = ev.content ?? {};
    switch (ev.type) {
        case "m.room.message":
            return { who, text: typeof c.body === "string" ? c.body : "", notice: c.msgtype === "m.notice" || c.msgtype === "m.emote" };
        case "m.room.member": {
            const target = c.displayname || room.memberName(ev.state_key);
            const prev = ev.unsigned?.prev_content?.membership;
            if (c.membership === "join" && prev === "join") return null; // profile change
            const verbs = { join: "joined", leave: ev.sender === ev.state_key ? "left" : `removed ${target}`, invite: `invited ${target}`, ban: `banned ${target}` };
            const verb = verbs[c.membership];
            if (!verb) return null;
            return { who: c.membership === "join" || (c.membership === "leave" && ev.sender === ev.state_key) ? target : who, text: verb, notice: true };
        }
        case "m.room.create":
            return { who, text: "created the room", notice: true };
        case "m.room.name":
            return { who, text: `named the room "${c.name ?? ""}"`, notice: true };
        case "m.call.invite":
            return { who, text: /m=video/.test(c.offer?.sdp ?? "") ? "started a video call" : "started a voice call", notice: true };
        case "m.call.hangup":
            return { who, text: "ended the call", notice: true };
        case "m.call.reject":
            return { who, text: "declined the call", notice: true };
    }
    return null;
}

function renderTimeline() {
    const room = client.rooms.get(currentRoomId);
    const tl = $("timeline");
    if (!room) {
        tl.replaceChildren();
        return;
    }
    renderRoomHead();
    const items = [];
    for (const ev of room.timeline) {
        const li = eventItem(ev, room);
        if (li) items.push(li);
    }
    tl.replaceChildren(...items);
    tl.scrollTop = tl.scrollHeight;
}

function eventItem(ev, room) {
    const d = describe(ev, room);
    if (!d) return null;
    const li = document.createElement("li");
    if (d.notice) li.className = "notice";
    if (ev.sender === client.userId) li.classList.add("mine");
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = d.who;
    const text = document.createElement("span");
    text.className = "body";
    text.textContent = d.text;
    const when = document.createElement("time");
    when.className = "when";
    when.textContent = timeOf(ev.origin_server_ts || Date.now());
    li.append(who, text, when);
    li.dataset.eventId = ev.event_id ?? "";
    return li;
}

function onTimeline(e) {
    const { room, event: ev, live } = e.detail;
    if (ev.type.startsWith("m.call.")) onCallEvent(room, ev, live);
    if (room.id !== currentRoomId) return;
    room.unread = 0;
    const li = eventItem(ev, room);
    if (!li) return;
    const tl = $("timeline");
    const atBottom = tl.scrollHeight - tl.scrollTop - tl.clientHeight < 80;
    tl.append(li);
    if (atBottom || ev.sender === client.userId) tl.scrollTop = tl.scrollHeight;
}

function onState(e) {
    const { room } = e.detail;
    if (group && group.roomId === room.id) group.onRoomState();
    if (room.id === currentRoomId) renderRoomHead();
}

async function sendMessage(ev) {
    ev.preventDefault();
    const input = $("message");
    const body = input.value.trim();
    if (!body || !currentRoomId) return;
    input.value = "";
    try {
        await client.sendEvent(currentRoomId, "m.room.message", { msgtype: "m.text", body });
    } catch (err) {
        input.value = body;
        if (err instanceof MatrixError && (err.errcode === "M_TOO_LARGE" || err.status === 413)) {
            toast(`This message is too long to send (limit ${MAX_EVENT_KB} KB). Shorten it or send it in parts.`);
        } else {
            toast(`Your message was not sent: ${errText(err)}`);
        }
    }
}

// ---- 1:1 calls ----

function onCallEvent(room, ev, live) {
    if (ev.type === "m.call.invite") {
        if (!live) return;
        if (ev.sender === client.userId) return; // our own, or another device of ours
        const c = ev.content;
        if (c.invitee && c.invitee !== client.userId) return;
        const age = ev.unsigned?.age ?? 0;
        if (age > (c.lifetime ?? 60000)) return;
        // Busy: let it ring out unanswered (spec: a callee need not answer).
        if (call || group || incomingCall) return;
        const inc = new Call(client, room, { callId: c.call_id, direction: "inbound", settings });
        inc.receive(ev);
        incomingCall = inc;
        inc.addEventListener("state", () => {
            if (inc.state !== "ringing") stopRinging();
            if (inc.state === "ended" && incomingCall === inc) {
                incomingCall = undefined;
                $("incoming").hidden = true;
                if (inc.hangupReason === "answered_elsewhere") toast("The call was answered on another device.", { info: true });
                else if (inc.hangupParty === "remote") toast(`Missed call from ${room.memberName(ev.sender)}.`, { info: true });
            }
        });
        showIncoming(inc, room, ev);
        return;
    }
    const id = ev.content?.call_id;
    if (call && call.callId === id) call.handle(ev);
    else if (incomingCall && incomingCall.callId === id) incomingCall.handle(ev);
}

function showIncoming(inc, room, ev) {
    startRinging();
    const name = room.memberName(ev.sender);
    $("incoming-avatar").replaceChildren(avatar(name));
    $("incoming-title").textContent = `${name} is calling`;
    $("incoming-sub").textContent = `${inc.video ? "Video" : "Voice"} call in ${room.displayName(client.userId)}`;
    $("accept-video").hidden = !inc.video;
    $("accept-voice").textContent = inc.video ? "Accept voice only" : "Accept";
    $("incoming").hidden = false;
    (inc.video ? $("accept-video") : $("accept-voice")).focus();
}

function acceptIncoming(video) {
    const inc = incomingCall;
    if (!inc) return;
    incomingCall = undefined;
    stopRinging();
    $("incoming").hidden = true;
    startCallView(inc);
    inc.answer(video);
}

function rejectIncoming() {
    const inc = incomingCall;
    if (!inc) return;
    incomingCall = undefined;
    stopRinging();
    $("incoming").hidden = true;
    inc.reject();
}

async function placeCall(video) {
    const room = client.rooms.get(currentRoomId);
    if (!room || call || group) return;
    const peer = room.members("join").find((u) => u !== client.userId);
    const c = new Call(client, room, { direction: "outbound", peerUserId: peer, video, settings });
    startCallView(c);
    await c.place();
}

const reasons = {
    user_hangup: "The call ended.",
    rejected: "The call was declined.",
    invite_timeout: "No answer.",
    ice_failed: "The connection failed: media could not get through. Turning on relay-only in Settings may help.",
    ice_timeout: "The connection was lost.",
    user_media_failed: "The call ended: the camera or microphone could not be opened.",
    user_busy: "They are busy on another call.",
    answered_elsewhere: "The call was answered on another device.",
};

function startCallView(c) {
    call = c;
    $("toast").hidden = true;
    const room = c.room;
    const peer = c.peerUserId;
    const peerName = peer ? room.memberName(peer) : room.displayName(client.userId);
    view.open({
        title: `${c.video ? "Video" : "Voice"} call with ${peerName}`,
        oneToOne: true,
        hangupLabel: "Hang up",
        canShare: true,
        handlers: {
            mic: () => {
                c.setMicMuted(!c.micMuted);
                view.setMic(c.micMuted);
                refreshCallTiles();
            },
            cam: () => {
                c.setCamMuted(!c.camMuted);
                view.setCam(c.camMuted);
                refreshCallTiles();
            },
            screen: () => toggleScreen(c.pc, c.localStream, c, (on) => view.setScreen(on)),
            devices: openSettings,
            hangup: () => c.hangup(),
        },
    });
    const remote = view.tile("remote", { name: peerName });
    remote.setStream(c.remoteStream);
    const refreshCallTiles = () => {
        if (c.localStream) view.tile("local", { name: "You", local: true }).setStream(c.localStream);
        view.tiles.get("local")?.setMuted({ audio: c.micMuted, video: c.camMuted || !c.video });
        const rm = c.remoteMuted();
        remote.setMuted({ audio: rm.audio, video: rm.video || c.remoteStream.getVideoTracks().length === 0 });
    };
    const statusText = {
        inviting: `Ringing ${peerName}…`,
        connecting: "Connecting…",
        connected: "Connected",
        reconnecting: "Connection lost: reconnecting (restarting ICE)…",
    };
    const onState = () => {
        view.setStatus(statusText[c.state] ?? "", c.state === "reconnecting");
        refreshCallTiles();
        if (c.state === "ended") {
            const why = reasons[c.hangupReason] ?? `The call ended (${c.hangupReason}).`;
            stopCall(c, c.hangupParty === "remote" || c.hangupReason !== "user_hangup" ? why : "");
        }
    };
    c.addEventListener("state", onState);
    c.addEventListener("streams", refreshCallTiles);
    c.addEventListener("remote-meta", refreshCallTiles);
    c.addEventListener("error", (e) => toast(e.detail));
    onState();
    view.startStats(async () => {
        const s = await c.stats();
        return s ? { remote: s } : {};
    });
    renderRoomHead();
}

function stopCall(c, message) {
    if (call !== c) return;
    call = undefined;
    view.stopStats();
    view.close();
    if (message) toast(message, { info: true });
    if (currentRoomId) renderRoomHead();
}

/** Swaps the camera for a screen (and back) on the video sender. */
async function toggleScreen(pc, stream, owner, show) {
    if (!pc) return;
    const sender = pc.getSenders().find((s) => s.track?.kind === "video" || s === owner.videoSender);
    if (!sender) {
        toast("Screen sharing needs a video call.", { info: true });
        return;
    }
    owner.videoSender = sender;
    if (owner.screenTrack) {
        owner.screenTrack.stop();
        owner.screenTrack = undefined;
        await sender.replaceTrack(owner.cameraTrack ?? null);
        view.tiles.get("local")?.setScreen(false);
        view.tiles.get("local")?.setStream(stream);
        show(false);
        return;
    }
    let screen;
    try {
        screen = await getScreen();
    } catch (err) {
        if (err.name !== "NotAllowedError") toast(explainMediaError(err));
        return;
    }
    const track = screen.getVideoTracks()[0];
    owner.cameraTrack = sender.track;
    owner.screenTrack = track;
    await sender.replaceTrack(track);
    const local = view.tiles.get("local");
    local?.setScreen(true);
    local?.setStream(screen);
    show(true);
    track.addEventListener("ended", () => {
        if (owner.screenTrack === track) toggleScreen(pc, stream, owner, show);
    });
}

// ---- group calls ----

async function joinGroup() {
    const room = client.rooms.get(currentRoomId);
    if (!room || call || group) return;
    $("toast").hidden = true;
    const g = new GroupCall(client, room, settings, view);
    group = g;
    renderRoomHead();
    view.open({
        title: `Group call in ${room.displayName(client.userId)}`,
        oneToOne: false,
        hangupLabel: "Leave",
        canShare: true,
        handlers: {
            mic: () => view.setMic(g.toggleMic()),
            cam: () => view.setCam(g.toggleCam()),
            screen: () => toggleScreen(g.pc, g.localStream, g, (on) => view.setScreen(on)),
            devices: openSettings,
            hangup: () => g.leave(),
        },
    });
    g.addEventListener("ended", (e) => {
        if (group !== g) return;
        group = undefined;
        view.stopStats();
        view.close();
        if (e.detail) toast(e.detail);
        if (currentRoomId) renderRoomHead();
    });
    view.startStats(() => g.tileStats());
    await g.join();
}

function endCalls() {
    call?.hangup();
    incomingCall?.reject();
    group?.leave();
}

// ---- settings ----

async function openSettings() {
    const dlg = $("settings");
    const { cams, mics } = await listDevices().catch(() => ({ cams: [], mics: [] }));
    const fill = (sel, list, current, none) => {
        const opts = list.map((d) => {
            const o = document.createElement("option");
            o.value = d.id;
            o.textContent = d.label;
            o.selected = d.id === current;
            return o;
        });
        if (opts.length === 0) {
            const o = document.createElement("option");
            o.value = "";
            o.textContent = none;
            opts.push(o);
        }
        sel.replaceChildren(...opts);
    };
    fill($("cam-select"), cams, settings.camId, "No camera found");
    fill($("mic-select"), mics, settings.micId, "No microphone found");
    $("relay-only").checked = settings.relayOnly;
    $("quality-select").value = settings.quality === "sd" ? "sd" : "hd";
    dlg.showModal();
}

async function settingsClosed() {
    const camId = $("cam-select").value;
    const micId = $("mic-select").value;
    const quality = $("quality-select").value;
    const changed = camId !== settings.camId || micId !== settings.micId || quality !== settings.quality;
    settings.quality = quality;
    settings.camId = camId;
    settings.micId = micId;
    settings.relayOnly = $("relay-only").checked;
    saveSettings();
    if (changed) {
        try {
            await group?.switchDevices();
            await call?.switchDevices();
        } catch (err) {
            toast(explainMediaError(err));
        }
    }
}

// ---- debugging and tests ----

/**
 * A read-only view of the page's calls for people debugging in the
 * console, and for the browser tests (which drive the page through its
 * buttons like a person, and read media facts here).
 */
window.switchboard = {
    get userId() {
        return client?.userId;
    },
    get settings() {
        return { ...settings };
    },
    async callInfo() {
        if (!call) return null;
        return { state: call.state, callId: call.callId, hangup: call.hangupReason, stats: await call.stats() };
    },
    async groupInfo() {
        return group ? group.info() : null;
    },
    /** See GroupCall.injectFault: "ice-restart" or "drop". */
    injectGroupFault(kind) {
        return group ? group.injectFault(kind) : false;
    },
    videos() {
        return [...document.querySelectorAll("#tiles .tile")].map((t) => {
            const v = t.querySelector("video");
            return {
                key: t.dataset.key,
                name: t.dataset.name,
                local: t.classList.contains("local"),
                speaking: t.classList.contains("speaking"),
                audioMuted: t.dataset.audioMuted === "true",
                videoMuted: t.dataset.videoMuted === "true",
                videoWidth: v.videoWidth,
                frames: v.getVideoPlaybackQuality?.().totalVideoFrames ?? 0,
                quality: t.querySelector(".quality")?.textContent ?? "",
            };
        });
    },
    summarizeStats,
};

// ---- wiring ----

function wire() {
    $("login-form").addEventListener("submit", (e) => {
        e.preventDefault();
        doAuth("login");
    });
    $("register").addEventListener("click", () => doAuth("register"));
    $("signout").addEventListener("click", signOut);
    $("open-settings").addEventListener("click", openSettings);
    $("settings").addEventListener("close", settingsClosed);
    $("composer").addEventListener("submit", sendMessage);
    $("back").addEventListener("click", closeRoom);
    $("create-form").addEventListener("submit", (e) => {
        e.preventDefault();
        busy($("create-room"), async () => {
            const name = $("new-room-name").value.trim();
            const inviteRaw = $("new-room-invite").value.trim();
            const invite = inviteRaw ? inviteRaw.split(/[\s,]+/).filter(Boolean) : [];
            for (const u of invite) if (!/^@[^:]+:.+$/.test(u)) throw new MatrixError(`"${u}" is not a user ID. User IDs look like @name:server.`);
            const res = await client.createRoom({ name, invite, isDirect: !name && invite.length === 1 });
            $("new-room-name").value = "";
            $("new-room-invite").value = "";
            client.room(res.room_id).lastActive = Date.now();
            openRoom(res.room_id);
        });
    });
    $("join-form").addEventListener("submit", (e) => {
        e.preventDefault();
        busy($("join-room"), async () => {
            const target = $("join-target").value.trim();
            if (!/^[#!][^:]+:.+$/.test(target)) throw new MatrixError("Enter a room alias (#name:server) or a room ID (!id:server).");
            const res = await client.join(target);
            $("join-target").value = "";
            openRoom(res.room_id);
        });
    });
    $("invite-form").addEventListener("submit", (e) => {
        e.preventDefault();
        busy($("invite-btn"), async () => {
            const u = $("invite-user").value.trim();
            if (!/^@[^:]+:.+$/.test(u)) throw new MatrixError("User IDs look like @name:server.");
            await client.invite(currentRoomId, u);
            $("invite-user").value = "";
            toast(`Invited ${u}.`, { info: true, ms: 3000 });
        });
    });
    $("accept-invite").addEventListener("click", () =>
        busy($("accept-invite"), async () => {
            await client.join(currentRoomId);
            const room = client.rooms.get(currentRoomId);
            if (room) room.membership = "join";
            renderRoomHead();
        }),
    );
    $("decline-invite").addEventListener("click", () =>
        busy($("decline-invite"), async () => {
            await client.leave(currentRoomId);
            client.rooms.delete(currentRoomId);
            closeRoom();
        }),
    );
    $("voice-call").addEventListener("click", () => placeCall(false));
    $("video-call").addEventListener("click", () => placeCall(true));
    $("group-call").addEventListener("click", joinGroup);
    $("accept-video").addEventListener("click", () => acceptIncoming(true));
    $("accept-voice").addEventListener("click", () => acceptIncoming(false));
    $("reject-call").addEventListener("click", rejectIncoming);
    document.addEventListener("keydown", (e) => {
        if (e.key === "Escape" && !$("incoming").hidden) rejectIncoming();
    });
    window.addEventListener("pagehide", () => {
        // Best effort: tell the others we left.
        if (client) client.unloading = true;
        call?.hangup();
        group?.leave();
    });
}

wire();
const saved = sessionStorage.getItem(SESSION_KEY);
if (saved) {
    try {
        startSession(JSON.parse(saved));
    } catch {
        showLogin("");
    }
} else {
    showLogin("");
}
