// Camera, microphone and screen capture (W3C Media Capture and Streams,
// Screen Capture), with errors explained in plain words.

/**
 * Opens the microphone (and the camera when video), using the devices
 * picked in settings when they still exist.
 */
export async function getMedia({ audio = true, video = true, settings = {} }) {
    if (!navigator.mediaDevices?.getUserMedia) {
        const err = new Error("no getUserMedia");
        err.name = "NotSupportedError";
        throw err;
    }
    const constraints = {
        audio: audio ? (settings.micId ? { deviceId: { ideal: settings.micId } } : true) : false,
        video: video
            ? {
                  // "sd" is for slow computers and networks.
                  width: { ideal: settings.quality === "sd" ? 640 : 1280 },
                  height: { ideal: settings.quality === "sd" ? 360 : 720 },
                  frameRate: { ideal: settings.quality === "sd" ? 20 : 30 },
                  ...(settings.camId ? { deviceId: { ideal: settings.camId } } : {}),
              }
            : false,
    };
    try {
        return await navigator.mediaDevices.getUserMedia(constraints);
    } catch (err) {
        // No camera but a microphone: carry on with audio only.
        if (video && (err.name === "NotFoundError" || err.name === "OverconstrainedError")) {
            return await navigator.mediaDevices.getUserMedia({ audio: constraints.audio, video: false });
        }
        throw err;
    }
}

/** Opens a screen, window or tab to share. */
export async function getScreen() {
    if (!navigator.mediaDevices?.getDisplayMedia) {
        const err = new Error("no getDisplayMedia");
        err.name = "NotSupportedError";
        throw err;
    }
    return navigator.mediaDevices.getDisplayMedia({ video: { frameRate: { ideal: 15 } }, audio: false });
}

/** Lists cameras and microphones: {cams: [{id, label}], mics: [...]}. */
export async function listDevices() {
    const out = { cams: [], mics: [] };
    if (!navigator.mediaDevices?.enumerateDevices) return out;
    const devices = await navigator.mediaDevices.enumerateDevices();
    for (const d of devices) {
        if (!d.deviceId) continue;
        if (d.kind === "videoinput") out.cams.push({ id: d.deviceId, label: d.label || `Camera ${out.cams.length + 1}` });
        if (d.kind === "audioinput") out.mics.push({ id: d.deviceId, label: d.label || `Microphone ${out.mics.length + 1}` });
    }
    return out;
}

/** A sentence for a person about why the camera or microphone did not open. */
export function explainMediaError(err) {
    switch (err?.name) {
        case "NotAllowedError":
        case "SecurityError":
            return "No permission to use your camera or microphone. Allow it in the browser's address bar (site settings), then try again.";
        case "NotFoundError":
            return "No microphone was found. Plug one in and try again.";
        case "NotReadableError":
        case "AbortError":
            return "Your camera or microphone is in use by another program, or could not be started.";
        case "NotSupportedError":
            return "This browser cannot make calls here. Calls need a current browser and a secure address (https:// or http://localhost).";
        case "OverconstrainedError":
            return "The selected camera or microphone is not available. Pick another in the device settings.";
    }
    return `Could not open your camera or microphone: ${err?.message ?? err}`;
}

/** A soft two-tone ring (Web Audio) while a call is ringing here. */
let ringer;

export function startRinging() {
    stopRinging();
    try {
        const ctx = new AudioContext();
        const ring = () => {
            const t = ctx.currentTime;
            for (const [f, at] of [[660, 0], [880, 0.25]]) {
                const o = ctx.createOscillator();
                const g = ctx.createGain();
                o.frequency.value = f;
                g.gain.setValueAtTime(0.0001, t + at);
                g.gain.exponentialRampToValueAtTime(0.15, t + at + 0.03);
                g.gain.exponentialRampToValueAtTime(0.0001, t + at + 0.22);
                o.connect(g).connect(ctx.destination);
                o.start(t + at);
                o.stop(t + at + 0.25);
            }
        };
        ctx.resume().catch(() => {});
        ring();
        ringer = { ctx, timer: setInterval(ring, 2000) };
    } catch {
        // no audio output: the dialog is enough
    }
}

export function stopRinging() {
    if (!ringer) return;
    clearInterval(ringer.timer);
    ringer.ctx.close().catch(() => {});
    ringer = undefined;
}
