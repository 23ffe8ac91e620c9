// camagent cloud console: the camera page's live view (docs/design.md §12.5).
//
// The cloud sends the camera's stream over a WebSocket as fragmented MP4: JSON text
// messages (`status`, `init`) and binary ones (the init segment, then whole fragments,
// the first ones from the last keyframe). They go into the <video> through Media Source
// Extensions, one MediaSource per init segment (a restarted stream starts a new
// timeline). The camera's status comes from the console's event stream (console.js
// passes it on as a "camera:update" event): a camera that is not online gets the reason
// instead of a picture, and plays again by itself when it is back. The same player
// shows an NVR's camera (its page passes on the NVR's status and the camera's probe).
"use strict";

(() => {
  const KEEP_BEHIND_S = 10; // seconds kept behind the playhead: memory stays bounded
  const TRIM_STEP_S = 2; // ... removed in steps, not after every fragment
  const JUMP_BEHIND_S = 0.5; // further behind the live edge than this: seek ...
  const JUMP_TO_S = 0.1; // ... to this much before the end of what is buffered
  const HURRY_BEHIND_S = 0.15; // further behind than this: play a little faster
  const HURRY_RATE = 1.1;
  const MAX_QUEUED_BYTES = 8 * 1024 * 1024; // appends this far behind: start afresh
  const RETRY_S = [1, 2, 4, 8, 15, 30];

  // Safari on iPhones has only the "managed" variant; both work the same way here.
  const MediaSourceClass = window.MediaSource || window.ManagedMediaSource;

  const ignore = () => {};
  const sentence = (text) => text.replace(/^./, (c) => c.toUpperCase()).replace(/([^.…])$/, "$1.");

  // Latency is mostly how far the playhead trails what has arrived (measured: this
  // policy mattered most). Far behind: jump; a little behind: play a little faster.
  function chase(video) {
    const ranges = video.buffered;
    if (!ranges.length) return;
    const end = ranges.end(ranges.length - 1);
    const behind = end - video.currentTime;
    if (behind > JUMP_BEHIND_S) {
      video.currentTime = end - JUMP_TO_S;
      video.playbackRate = 1;
    } else {
      video.playbackRate = behind > HURRY_BEHIND_S ? HURRY_RATE : 1;
    }
    // Muted, so autoplay is allowed; a refusal (or a play() cut short by the next
    // seek) is retried at the next fragment.
    if (video.paused) video.play().catch(ignore);
  }

  // One MediaSource fed with one init segment and the fragments after it.
  class Feed {
    constructor(video, mime, onFail) {
      this.video = video;
      this.mime = mime;
      this.onFail = onFail;
      this.queue = [];
      this.queued = 0;
      this.buffer = null;
      this.closed = false;
      this.source = new MediaSourceClass();
      this.url = URL.createObjectURL(this.source);
      this.source.addEventListener("sourceopen", () => this.open(), { once: true });
      video.disableRemotePlayback = true; // a ManagedMediaSource plays only so
      video.src = this.url;
    }

    open() {
      URL.revokeObjectURL(this.url); // the element holds the source now
      if (this.closed) return;
      try {
        this.buffer = this.source.addSourceBuffer(this.mime);
      } catch (error) {
        this.onFail(`this browser cannot play the camera's stream (${this.mime})`);
        return;
      }
      this.buffer.addEventListener("updateend", () => this.next());
      this.next();
    }

    push(bytes) {
      if (this.closed) return;
      this.queue.push(bytes);
      this.queued += bytes.byteLength;
      if (this.queued > MAX_QUEUED_BYTES) {
        // The browser takes the stream slower than it comes: what is queued is stale.
        this.onFail("the browser fell behind the stream");
        return;
      }
      this.next();
    }

    // A SourceBuffer takes one operation at a time: a trim when one is due, else the
    // next fragment; its updateend calls this again.
    next() {
      const buffer = this.buffer;
      if (this.closed || buffer === null || buffer.updating) return;
      if (this.trim(buffer)) return;
      const bytes = this.queue.shift();
      if (bytes === undefined) {
        chase(this.video);
        return;
      }
      this.queued -= bytes.byteLength;
      try {
        buffer.appendBuffer(bytes);
      } catch (error) {
        // QuotaExceededError, or the element gave up on the source (its error event
        // says why): start again from a keyframe.
        this.onFail("the browser could not take more of the stream");
      }
    }

    trim(buffer) {
      const ranges = buffer.buffered;
      if (!ranges.length) return false;
      const keepFrom = this.video.currentTime - KEEP_BEHIND_S;
      const start = ranges.start(0);
      if (start > keepFrom - TRIM_STEP_S) return false;
      buffer.remove(start, keepFrom);
      return true;
    }

    close() {
      this.closed = true;
      this.queue = [];
      this.queued = 0;
    }
  }

  // Why an NVR's camera has no picture to show, or null when it should have one. Its
  // `status` is the NVR's; `live` says whether the registrator's Broadcast settings let
  // it stream (the API refuses the socket otherwise); `video.reachable` is the probe's.
  function whyNoNvrPicture(source) {
    const reasons = {
      offline: "The NVR is offline. The picture comes back by itself when it reconnects.",
      pending: "The NVR has not connected yet: no picture until it does.",
      deleted: "This camera is gone: a Sync removed it, or its registrator was deleted.",
    };
    if (source.status !== "online") return reasons[source.status] || `The NVR is ${source.status}.`;
    if (source.live === false) {
      return "Live view is off for this camera: the registrator's Broadcast settings leave it out.";
    }
    const video = source.video || {};
    if (video.reachable === false) {
      return `The NVR cannot reach this camera: ${video.detail || "no answer"}. ` +
        "Its picture comes when it answers.";
    }
    if (Array.isArray(video.streams) && !video.streams.some((s) => s === "main" || s === "sub")) {
      return "The NVR offers no video for this camera.";
    }
    return null;
  }

  // Why a camera has no picture to show, or null when it should have one.
  function whyNoPicture(camera) {
    if (camera.kind === "nvr_camera") return whyNoNvrPicture(camera);
    const reasons = {
      offline: "The camera is offline. Its picture comes back by itself when it reconnects.",
      waiting: "The camera has not connected yet: no picture until it does.",
      moved: "This camera moved to another account.",
      expired: "The camera never connected and its claim expired: delete it and add it again.",
      deleted: "This camera was deleted.",
    };
    if (camera.status !== "online") return reasons[camera.status] || `The camera is ${camera.status}.`;
    // null: not known (an older device); a list without main or sub: nothing to watch.
    const streams = camera.video ? camera.video.streams : null;
    if (Array.isArray(streams) && !streams.some((s) => s === "main" || s === "sub")) {
      return "This camera offers no video (the [video] section of its agent.toml is empty).";
    }
    return null;
  }

  class LivePlayer {
    constructor(box) {
      this.box = box;
      this.video = box.querySelector("video");
      this.status = box.querySelector("[role=status]");
      this.url = new URL(box.dataset.live, window.location.href);
      this.url.protocol = this.url.protocol === "http:" ? "ws:" : "wss:";
      this.socket = null;
      this.feed = null;
      this.wanted = false; // the camera is online: keep a socket open
      this.failures = 0;
      this.retryTimer = null;
      this.lastError = null;
      this.video.addEventListener("error", () => this.fail("the browser could not decode the picture"));
      // Stalled at the end of what arrived (a late fragment): catch up when it comes.
      this.video.addEventListener("waiting", () => chase(this.video));
      window.addEventListener("pagehide", () => this.stop(""));
    }

    // The camera's status decides: online → watch; anything else → say why not.
    follow(camera) {
      const reason = whyNoPicture(camera);
      if (reason !== null) this.stop(reason);
      else if (!this.wanted) {
        this.wanted = true;
        this.failures = 0;
        this.connect();
      }
    }

    stop(reason) {
      if (this.wanted || this.socket !== null || this.feed !== null) {
        this.wanted = false;
        this.cancelRetry();
        this.closeSocket();
        this.dropFeed();
        this.video.removeAttribute("src");
        this.video.load(); // lets the old MediaSource and its buffers go
      }
      this.say(reason, false);
    }

    cancelRetry() {
      window.clearTimeout(this.retryTimer);
      this.retryTimer = null;
    }

    connect() {
      this.retryTimer = null;
      this.lastError = null;
      const socket = new WebSocket(this.url.href);
      socket.binaryType = "arraybuffer";
      socket.addEventListener("message", (event) => this.message(socket, event));
      socket.addEventListener("close", () => this.closed(socket));
      this.socket = socket;
      if (this.feed === null) this.say("Connecting…", false);
    }

    closeSocket() {
      const socket = this.socket;
      this.socket = null;
      if (socket === null) return;
      // Closing one that is still connecting makes Chromium log an error: wait for it.
      if (socket.readyState === WebSocket.CONNECTING) {
        socket.addEventListener("open", () => socket.close(1000));
      } else socket.close(1000);
    }

    dropFeed() {
      if (this.feed !== null) this.feed.close();
      this.feed = null;
    }

    message(socket, event) {
      if (socket !== this.socket) return;
      if (typeof event.data !== "string") {
        if (this.feed !== null) this.feed.push(event.data);
        return;
      }
      let message;
      try {
        message = JSON.parse(event.data);
      } catch (error) {
        return; // not ours to understand
      }
      if (message.type === "init") this.init(message);
      else if (message.type === "status") this.serverStatus(message);
    }

    init(message) {
      this.dropFeed();
      if (!MediaSourceClass || !MediaSourceClass.isTypeSupported(message.mime)) {
        this.showError(`This browser cannot play the camera's stream (${message.mime}).`);
        return;
      }
      // The box takes the stream's shape (CSSOM, which the CSP allows; style="" it would not).
      if (message.width > 0 && message.height > 0) {
        this.video.style.aspectRatio = `${message.width} / ${message.height}`;
      }
      this.feed = new Feed(this.video, message.mime, (why) => this.fail(why));
      this.say(this.status.textContent, true);
    }

    serverStatus(message) {
      if (message.state === "playing") {
        this.failures = 0;
        this.say(`Live · ${message.message}`, this.feed !== null);
      } else if (message.state === "connecting") {
        this.say("Connecting…", this.feed !== null);
      } else if (message.state === "retrying") {
        this.say(`Retrying: ${message.message}`, this.feed !== null);
      } else if (message.state === "error") {
        // e.g. a camera sending H.265: nothing comes until its stream changes, so the
        // socket stays open and the page says why there is no picture.
        this.showError(sentence(message.message));
      }
    }

    showError(text) {
      this.lastError = text;
      this.dropFeed();
      this.say(text, false);
    }

    // The media side broke: a new socket starts again from the init segment and a keyframe.
    fail(why) {
      // The element and the SourceBuffer may both report one failure: one retry.
      if (!this.wanted || this.retryTimer !== null) return;
      this.closeSocket();
      this.dropFeed();
      this.retry(sentence(why));
    }

    closed(socket) {
      if (socket !== this.socket) return;
      this.socket = null;
      this.dropFeed();
      if (this.wanted) this.retry(this.lastError || "The connection to the cloud closed.");
    }

    retry(why) {
      this.cancelRetry();
      const delay = RETRY_S[Math.min(this.failures, RETRY_S.length - 1)];
      this.failures += 1;
      this.say(`${why} Trying again in ${delay} s…`, false);
      this.retryTimer = window.setTimeout(() => this.connect(), delay * 1000);
    }

    // The one status line: under the picture, or in its place when there is none.
    say(text, picture) {
      if (this.status.textContent !== text) this.status.textContent = text;
      this.box.classList.toggle("no-picture", !picture);
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    const box = document.getElementById("player");
    if (!box) return;
    const player = new LivePlayer(box);
    document.addEventListener("camera:update", (event) => player.follow(event.detail));
    player.follow(JSON.parse(box.dataset.camera));
  });
})();
