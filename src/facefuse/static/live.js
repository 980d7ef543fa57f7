// facefuse Live tab: the camera's frames go to /api/v1/live as JPEG, fused JPEG frames come back.
// At most two frames are on their way at once (the server fuses two at a time); a camera frame
// that comes while two are out is not sent, and when an answer frees a slot the camera's newest
// frame goes at once (each camera frame once, where the browser numbers them:
// requestVideoFrameCallback). Sending pauses while the browser tab is hidden.
(() => {
  const IN_FLIGHT = 2;
  const JPEG_QUALITY = 0.8;
  const el = (id) => document.getElementById(id);
  let ws = null, stream = null, timer = null, sentAt = [], shown = [], lastUrl = null, noFace = false;
  let recording = false;
  let video = null, canvas = null;
  let cameraFrame = 0, sentFrame = -1, numbered = false, runs = 0;  // camera frames seen, the last one sent

  function say(text) {
    const box = el("live_message");
    if (box) box.textContent = text;
  }

  function setButton(running) {
    const button = el("live_start");
    if (button) button.textContent = running ? "Stop" : "Start camera";
  }

  function setRecording(on) {
    recording = on;
    const button = el("live_record");
    if (button) button.textContent = on ? "Stop recording" : "Record";
  }

  function stop(message) {
    if (timer) clearInterval(timer);
    timer = null;
    if (ws) { ws.onclose = null; ws.close(1000); }
    ws = null;
    if (stream) stream.getTracks().forEach((t) => t.stop());
    stream = null;
    sentAt = []; shown = [];
    setButton(false);
    if (recording) { setRecording(false); message = (message || "") + " The recording was saved in the results folder."; }
    if (message !== undefined) say(message);
  }

  function showStats() {
    const now = performance.now();
    shown = shown.filter((s) => now - s.at < 2000);
    const fps = shown.length > 1 ? (shown.length - 1) / ((shown[shown.length - 1].at - shown[0].at) / 1000) : 0;
    const lat = shown.map((s) => s.latency).sort((a, b) => a - b);
    el("live_fps").textContent = fps.toFixed(1);
    el("live_latency").textContent = lat.length ? Math.round(lat[Math.floor(lat.length / 2)]) : "–";
  }

  function sendFrame() {
    if (!ws || ws.readyState !== WebSocket.OPEN || document.hidden || sentAt.length >= IN_FLIGHT) return;
    if (!video || !video.videoWidth || (numbered && cameraFrame === sentFrame)) return;
    sentFrame = cameraFrame;
    canvas.width = video.videoWidth;
    canvas.height = video.videoHeight;
    canvas.getContext("2d").drawImage(video, 0, 0);
    sentAt.push(performance.now());
    canvas.toBlob((blob) => { if (ws && blob) ws.send(blob); else sentAt.shift(); }, "image/jpeg", JPEG_QUALITY);
  }

  function onMessage(event) {
    if (typeof event.data === "string") {
      const msg = JSON.parse(event.data);
      if (msg.type === "ready") say("Live: your face on the camera's picture.");
      else if (msg.type === "frame") {
        if ((msg.faces === 0) !== noFace) {
          noFace = msg.faces === 0;
          say(noFace ? "No face in view: the frames pass through unchanged." : "Live: your face on the camera's picture.");
        }
      } else if (msg.type === "saved" && msg.frames !== undefined) {
        setRecording(false);
        say(`Recording saved as ${msg.name} (${msg.frames} frames) in ${msg.dir}.`);
      } else if (msg.type === "saved") say(`Snapshot saved as ${msg.name} in ${msg.dir}.`);
      else if (msg.type === "recording") { setRecording(true); say(`Recording to ${msg.name}…`); }
      else if (msg.type === "error") say(msg.message);
      return;
    }
    const latency = performance.now() - (sentAt.shift() || performance.now());
    const url = URL.createObjectURL(event.data);
    const img = el("live_output");
    img.onload = () => { if (lastUrl) URL.revokeObjectURL(lastUrl); lastUrl = url; };
    img.src = url;
    shown.push({at: performance.now(), latency});
    showStats();
    sendFrame();  // a slot is free: the newest camera frame goes now, not at the next tick
  }

  function onClose(event) {
    const why = {1013: "The server is busy", 1008: "Refused", 1009: "Too large", 4408: "Stopped",
                 4422: "No face in the source", 4400: "Refused", 4415: "Not an image"}[event.code];
    stop(why ? `${why}: ${event.reason}` : `The connection ended${event.reason ? ": " + event.reason : "."}`);
  }

  async function start(ticket) {
    video = el("live_camera");
    try {
      stream = await navigator.mediaDevices.getUserMedia({video: {width: 640, height: 480}, audio: false});
    } catch (err) {
      stop("No camera: the browser was not allowed to use one, or has none (allow it and press Start again).");
      return;
    }
    video.srcObject = stream;
    await video.play().catch(() => {});
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const base = location.pathname.replace(/\/[^/]*$/, "");
    ws = new WebSocket(`${scheme}://${location.host}${base}/api/v1/live?ticket=${encodeURIComponent(ticket)}`);
    ws.binaryType = "blob";
    ws.onmessage = onMessage;
    ws.onclose = onClose;
    noFace = false;
    canvas = document.createElement("canvas");
    numbered = "requestVideoFrameCallback" in video;
    if (numbered) {
      const mine = ++runs;  // a restarted camera's counter replaces this one
      const onFrame = () => {
        if (!stream || runs !== mine) return;
        cameraFrame += 1;
        sendFrame();
        video.requestVideoFrameCallback(onFrame);
      };
      video.requestVideoFrameCallback(onFrame);
    }
    timer = setInterval(sendFrame, 1000 / 30);  // where frames are not numbered, and as a fallback
    setButton(true);
    say("Connecting…");
  }

  document.addEventListener("visibilitychange", () => {
    if (ws) say(document.hidden ? "Paused while this tab is hidden." : "Live: your face on the camera's picture.");
  });

  window.facefuseLive = {
    toggle(ticket) {
      if (ws || stream) stop("Stopped.");
      else if (ticket) start(ticket);
    },
    params(values) {
      if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({type: "params", ...values}));
    },
    snapshot() {
      if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({type: "snapshot"}));
      else say("Start the camera first.");
    },
    record() {
      if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({type: "record", on: !recording}));
      else say("Start the camera first.");
    },
  };
})();
