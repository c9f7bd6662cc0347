// The viewer: plays a live session's frames from the gateway's WebSocket (/ws) and turns keys and mouse
// drags into camera commands, one command per change of the keys held (a move is a velocity per block
// that the session keeps applying until the next one). Protocol: gateway/protocol.py.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const canvas = $("screen"), ctx = canvas.getContext("2d");
  const query = new URLSearchParams(location.search);
  const fragment = new URLSearchParams(location.hash.slice(1));
  if (fragment.has("token")) {
    $("token").value = fragment.get("token");
    history.replaceState(null, "", location.pathname + location.search);  // the token leaves the address bar
  }
  for (const key of ["video_uri", "prompt", "autoencoder", "backpressure"]) {
    if (query.has(key)) $(key).value = query.get(key);
  }

  // What a test (or a curious person, in the console) can read.
  const state = window.viewer = {
    status: "idle", ready: null, blocks: 0, framesShown: 0, framesDropped: 0, lastBlock: null,
    shownBlock: null, latencyMs: null, fps: 0, errors: [], movesSent: 0, lastMove: null, lastSeq: 0,
  };

  let ws = null, fps = 16, pending = null, queue = [], seq = 0, paused = false;
  const sentAt = new Map();      // command seq -> performance.now() when sent
  const measured = new Set();    // command seqs whose first frame has been shown
  const shownTimes = [];

  function setStatus(text, error = false) {
    state.status = text;
    $("status").textContent = text;
    $("status").classList.toggle("error", error);
  }

  function send(message) {
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    ws.send(JSON.stringify(message));
    return true;
  }

  function command(type, fields = {}) {
    seq += 1;
    if (send({ type, seq, ...fields })) { sentAt.set(seq, performance.now()); state.lastSeq = seq; }
  }

  async function start() {
    if (ws) ws.close();
    const file = $("upload").files[0];
    const options = { type: "start", autoencoder: $("autoencoder").value, backpressure: $("backpressure").value };
    if ($("token").value) options.token = $("token").value;
    if ($("prompt").value) options.prompt = $("prompt").value;
    if (file) options.upload_name = file.name.replace(/[\\/]/g, "_");
    else if ($("video_uri").value) options.video_uri = $("video_uri").value;
    else { setStatus("give a video (s3:// address) or a file", true); return; }
    Object.assign(state, { ready: null, blocks: 0, lastBlock: null, errors: [] });
    queue = []; pending = null; paused = false; lastMove = "";
    setStatus("connecting");
    ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws");
    ws.binaryType = "blob";
    ws.onopen = async () => {
      ws.send(JSON.stringify(options));
      if (file) {
        setStatus("uploading");
        for (let at = 0; at < file.size; at += 1 << 20) ws.send(await file.slice(at, at + (1 << 20)).arrayBuffer());
        ws.send(JSON.stringify({ type: "upload_done" }));
      }
      canvas.focus();
    };
    ws.onmessage = (message) => (typeof message.data === "string" ? onEvent(JSON.parse(message.data)) : onFrame(message.data));
    ws.onclose = () => { if (!/^(ended|error)/.test(state.status)) setStatus("disconnected"); ws = null; };
  }

  function onEvent(event) {
    switch (event.type) {
      case "opening": setStatus("opening (caption, depth)"); break;
      case "ready":
        state.ready = event;
        fps = event.fps || fps;
        if (event.width && event.height) { canvas.width = event.width; canvas.height = event.height; }
        $("caption").textContent = event.caption ? `caption: ${event.caption}` : "";
        setStatus("playing");
        sendMove(true);
        break;
      case "block":
        pending = { ...event, received: 0 };
        state.blocks += 1;
        state.lastBlock = event;
        $("block").textContent = `${event.generation}:${event.index}`;
        if (event.dropped_before) { state.framesDropped += event.dropped_before * event.frames; }
        break;
      case "ended": setStatus(`ended (${event.reason})`); break;
      case "error":
        state.errors.push(event.message);
        setStatus(`error: ${event.message}`, true);
        break;
    }
  }

  function onFrame(blob) {
    if (!pending) return;
    queue.push({ blob, block: pending, index: pending.received });
    pending.received += 1;
    // Stay live: never more than two blocks behind (older frames are dropped, counted).
    const limit = 2 * Math.max(pending.frames, 1);
    while (queue.length > limit) { queue.shift(); state.framesDropped += 1; }
    $("dropped").textContent = state.framesDropped;
  }

  // Frames are shown at the stream's pace (fps from the ready event).
  let nextAt = 0, drawing = false;
  function tick(now) {
    requestAnimationFrame(tick);
    if (drawing || !queue.length || now < nextAt) return;
    nextAt = Math.max(now, nextAt + 1000 / fps - 4);
    const frame = queue.shift();
    drawing = true;
    createImageBitmap(frame.blob).then((bitmap) => {
      ctx.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
      bitmap.close();
      shown(frame, performance.now());
    }).finally(() => { drawing = false; });
  }
  requestAnimationFrame(tick);

  function shown(frame, now) {
    state.framesShown += 1;
    state.shownBlock = frame.block;
    $("frames").textContent = state.framesShown;
    shownTimes.push(now);
    while (shownTimes.length && now - shownTimes[0] > 2000) shownTimes.shift();
    if (shownTimes.length > 1) {
      state.fps = (shownTimes.length - 1) * 1000 / (now - shownTimes[0]);
      $("fps").textContent = state.fps.toFixed(1);
    }
    const s = frame.block.command_seq;
    if (frame.index === 0 && s != null && sentAt.has(s) && !measured.has(s)) {
      measured.add(s);  // command -> its first frame on screen, on this page's clock
      state.latencyMs = now - sentAt.get(s);
      $("latency").textContent = `${Math.round(state.latencyMs)} ms`;
    }
  }

  // Keys and drags -> one move per change.
  const held = new Set();
  const drag = { active: false, x: 0, y: 0, yaw: 0, pitch: 0 };
  let lastMove = "";
  const axis = (plus, minus) => (held.has(plus) ? 1 : 0) - (held.has(minus) ? 1 : 0);
  const quantize = (v) => Math.round(v * 4) / 4;

  function sendMove(force = false) {
    const speed = Number($("speed").value) || 0, turn = Number($("turn").value) || 0;
    const move = {
      forward: axis("KeyW", "KeyS") * speed,
      right: axis("KeyD", "KeyA") * speed,
      up: 0,
      yaw: (axis("ArrowRight", "ArrowLeft") + drag.yaw) * turn,
      pitch: (axis("ArrowUp", "ArrowDown") + drag.pitch) * turn,
      orbit: axis("KeyE", "KeyQ") * turn,
    };
    const key = JSON.stringify(move);
    if (key === lastMove && !force) return;
    if (key === JSON.stringify({ forward: 0, right: 0, up: 0, yaw: 0, pitch: 0, orbit: 0 }) && !lastMove) return;
    lastMove = key;
    state.movesSent += 1;
    state.lastMove = move;
    command("move", move);
  }

  const MOVE_KEYS = new Set(["KeyW", "KeyS", "KeyA", "KeyD", "KeyQ", "KeyE", "ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown"]);
  const typing = (event) => /^(INPUT|SELECT|TEXTAREA)$/.test(event.target.tagName) && event.target.type !== "file";

  window.addEventListener("keydown", (event) => {
    if (typing(event) || event.ctrlKey || event.metaKey || event.altKey) return;
    if (MOVE_KEYS.has(event.code)) {
      event.preventDefault();
      if (!event.repeat) { held.add(event.code); sendMove(); }
    } else if (event.code === "Space") {
      event.preventDefault();
      if (!event.repeat) togglePause();
    } else if (event.code === "KeyR" && !event.repeat) {
      reset();
    }
  });
  window.addEventListener("keyup", (event) => {
    if (held.delete(event.code)) sendMove();
  });
  window.addEventListener("blur", () => { held.clear(); drag.yaw = drag.pitch = 0; sendMove(); });

  canvas.addEventListener("pointerdown", (event) => {
    Object.assign(drag, { active: true, x: event.clientX, y: event.clientY });
    canvas.setPointerCapture(event.pointerId);
    canvas.classList.add("dragging");
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!drag.active) return;
    const width = canvas.clientWidth || 1, height = canvas.clientHeight || 1;
    const clamp = (v) => Math.max(-2, Math.min(2, v));
    drag.yaw = quantize(clamp((event.clientX - drag.x) / width * 4));
    drag.pitch = quantize(clamp(-(event.clientY - drag.y) / height * 4));
    sendMove();
  });
  const endDrag = () => {
    if (!drag.active) return;
    Object.assign(drag, { active: false, yaw: 0, pitch: 0 });
    canvas.classList.remove("dragging");
    sendMove();
  };
  canvas.addEventListener("pointerup", endDrag);
  canvas.addEventListener("pointercancel", endDrag);

  function togglePause() {
    paused = !paused;
    command(paused ? "pause" : "resume");
    $("pause").textContent = paused ? "Resume" : "Pause";
    if (state.ready) setStatus(paused ? "paused" : "playing");
  }
  function reset() { queue = []; command("reset"); if (lastMove) sendMove(true); }

  $("controls").addEventListener("submit", (event) => { event.preventDefault(); start(); });
  $("pause").addEventListener("click", togglePause);
  $("reset").addEventListener("click", reset);
  $("close").addEventListener("click", () => command("close"));

  if (query.has("video_uri")) start();
})();
