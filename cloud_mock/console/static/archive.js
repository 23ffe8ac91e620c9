// camagent cloud console: a camera's archive on its page (docs/design.md §12.5, §12.6),
// for a camera and for an NVR's camera alike: the recording setting, the recorder's
// state, the time recorded in the last 24 hours as a bar (tap a point to play from it)
// and as a list (the keyboard's way, with "Play from" a typed time), and a player.
//
// The archive's JSON comes through the console's gateway with console.js's call()
// (loaded before this file; its el(), busy(), errorText() and recordingText() too), every
// REFRESH_MS while the page is shown. A recording plays from the API's HLS playlist of
// one span: natively where the browser has HLS (Chromium, Safari), else with hls.js
// (vendor.sh puts it beside the console's files; loaded only then, its worker off so the
// CSP needs no blob: script). Times are the mock clock's Unix seconds, in UTC as
// everywhere in the console; the bar ends at the mock's "now" (the archive's `to`).
"use strict";

(() => {
  const DAY_S = 86400;
  const HOUR_S = 3600;
  const REFRESH_MS = 10000;
  const SNAP_PX = 22; // a tap this close to a recording plays it (half a tap target)
  const MIN_SPAN_PX = 3; // a recording is drawn at least this wide (console.css too)
  const NARROW_PX = 560; // a bar narrower than this labels every 6 hours, not every 3
  const LABEL_MARGIN = 0.06; // no hour label this close to an end: it would stick out
  const LISTED = 20; // recordings listed, newest first
  const TAIL_S = 1; // a point picked at a recording's very end plays its last second
  const HLS_TYPE = "application/vnd.apple.mpegurl";

  const byId = (id) => document.getElementById(id);
  const pad = (n) => String(n).padStart(2, "0");
  const sentence = (text) => text.replace(/^./, (c) => c.toUpperCase()).replace(/([^.…])$/, "$1.");

  // "14:03:22", with "yesterday" when the day is not the one the bar ends on.
  function clock(at, end) {
    const day = (t) => Math.floor(t / DAY_S);
    const d = new Date(at * 1000);
    const time = `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`;
    return day(at) < day(end) ? `yesterday ${time}` : time;
  }

  function duration(seconds) {
    const s = Math.round(seconds);
    if (s < 60) return `${s} s`;
    if (s < HOUR_S) return `${Math.floor(s / 60)} min ${s % 60} s`;
    return `${Math.floor(s / HOUR_S)} h ${Math.floor((s % HOUR_S) / 60)} min`;
  }

  // <input type=datetime-local> holds a time without a zone: here it is UTC.
  const toLocalInput = (at) => new Date(Math.floor(at) * 1000).toISOString().slice(0, 19);
  const fromLocalInput = (value) => Date.parse(`${value}Z`) / 1000;

  // --- the playlist's times: where in the video a moment of the recording is -----------

  // The segments of an HLS playlist: their place in the video (`offset`: the durations
  // before them) and their recorded time (`at`: #EXT-X-PROGRAM-DATE-TIME, else the end
  // of the one before).
  function parsePlaylist(text) {
    const segments = [];
    let at = NaN;
    let length = NaN;
    let offset = 0;
    for (const raw of text.split("\n")) {
      const line = raw.trim();
      if (line.startsWith("#EXTINF:")) length = parseFloat(line.slice("#EXTINF:".length));
      else if (line.startsWith("#EXT-X-PROGRAM-DATE-TIME:")) {
        at = Date.parse(line.slice("#EXT-X-PROGRAM-DATE-TIME:".length)) / 1000;
      } else if (line && !line.startsWith("#")) {
        const last = segments[segments.length - 1];
        const start = Number.isFinite(at) ? at : last ? last.at + last.length : NaN;
        if (Number.isFinite(length) && Number.isFinite(start)) {
          segments.push({ offset, at: start, length });
          offset += length;
        }
        at = NaN;
        length = NaN;
      }
    }
    return segments;
  }

  // Where in the video `at` is: in its segment, else the next segment's start.
  function positionOf(segments, at) {
    for (const s of segments) {
      if (at < s.at) return s.offset;
      if (at < s.at + s.length) return s.offset + (at - s.at);
    }
    const last = segments[segments.length - 1];
    return last ? Math.max(0, last.offset + last.length - TAIL_S) : 0;
  }

  // The recorded time shown at `position` of the video.
  function timeOf(segments, position) {
    for (const s of segments) {
      if (position < s.offset + s.length) return s.at + Math.max(0, position - s.offset);
    }
    const last = segments[segments.length - 1];
    return last ? last.at + last.length : null;
  }

  // --- the bar ----------------------------------------------------------------------------

  // The last 24 hours, the recordings drawn in it, hour ticks and labels, and a mark
  // where the player is. Positions are percentages (CSSOM: the CSP allows no style="").
  class Timeline {
    constructor(bar, hours, onPick, onMiss) {
      this.bar = bar;
      this.hours = hours;
      this.end = null;
      this.spans = [];
      this.mark = null;
      bar.addEventListener("click", (event) => {
        const picked = this.pick(event.clientX);
        if (picked === null) return;
        if (picked.span) onPick(picked.span, picked.at);
        else onMiss(picked.at);
      });
      window.addEventListener("resize", () => this.draw());
    }

    share(at) {
      return (at - (this.end - DAY_S)) / DAY_S;
    }

    place(node, share, width) {
      node.style.left = `${Math.min(100, Math.max(0, share * 100))}%`;
      if (width !== undefined) node.style.width = `${Math.max(0, width * 100)}%`;
      return node;
    }

    update(end, spans) {
      this.end = end;
      this.spans = spans;
      this.draw();
    }

    setMark(at) {
      this.mark = at;
      const node = this.bar.querySelector(".timeline-mark");
      if (at === null || this.end === null) {
        if (node) node.remove();
      } else if (node) this.place(node, this.share(at));
      else this.bar.append(this.place(el("div", { class: "timeline-mark" }), this.share(at)));
    }

    draw() {
      if (this.end === null) return;
      const start = this.end - DAY_S;
      const every = this.bar.clientWidth < NARROW_PX ? 6 : 3;
      const ticks = [];
      const labels = [];
      for (let t = Math.ceil(start / HOUR_S) * HOUR_S; t <= this.end; t += HOUR_S) {
        const hour = new Date(t * 1000).getUTCHours();
        const major = hour % every === 0;
        const share = this.share(t);
        ticks.push(this.place(el("div", { class: major ? "tick major" : "tick" }), share));
        if (major && share > LABEL_MARGIN && share < 1 - LABEL_MARGIN) {
          labels.push(this.place(el("span", { text: `${pad(hour)}:00` }), share));
        }
      }
      const width = this.bar.clientWidth;
      const spans = this.spans.map((span) => {
        const [x0, x1] = this.extent(span, width);
        return this.place(el("div", { class: "timeline-span" }), x0 / width, (x1 - x0) / width);
      });
      this.bar.replaceChildren(...ticks, ...spans);
      this.hours.replaceChildren(...labels);
      this.setMark(this.mark);
    }

    // Where a recording is drawn, in px of a bar `width` wide: at least MIN_SPAN_PX wide,
    // and inside the bar (the newest ends at its right edge, or a little past "now").
    extent(span, width) {
      const px = (at) => Math.min(width, Math.max(0, this.share(at) * width));
      const x0 = Math.min(px(span.start), width - MIN_SPAN_PX);
      return [x0, Math.max(px(span.end), x0 + MIN_SPAN_PX)];
    }

    // The recording nearest a tap (its drawn box, however narrow, within SNAP_PX) and the
    // moment in it: the tap's place within the box, so a tiny box still plays. Far from
    // any: no span, and the moment tapped (the page says nothing was recorded then).
    pick(clientX) {
      if (this.end === null) return null;
      // The drawn boxes are placed in the bar's padding box: inside its border.
      const x = clientX - this.bar.getBoundingClientRect().left - this.bar.clientLeft;
      const width = this.bar.clientWidth;
      let best = null;
      for (const span of this.spans) {
        const [x0, x1] = this.extent(span, width);
        const off = x < x0 ? x0 - x : Math.max(0, x - x1);
        if (off <= SNAP_PX && (best === null || off < best.off)) best = { span, x0, x1, off };
      }
      if (best === null) return { span: null, at: this.end - DAY_S + (x / width) * DAY_S };
      const { span } = best;
      const share = Math.min(1, Math.max(0, (x - best.x0) / (best.x1 - best.x0)));
      const at = span.start + share * (span.end - span.start);
      return { span, at: Math.min(at, Math.max(span.start, span.end - TAIL_S)) };
    }
  }

  // --- the player of a recording ------------------------------------------------------------

  let hlsReady = null;
  function loadHls(src) {
    if (!hlsReady) {
      hlsReady = new Promise((resolve, reject) => {
        const script = document.createElement("script");
        script.src = src;
        script.onload = () => (window.Hls ? resolve(window.Hls) : reject(new Error("no Hls")));
        script.onerror = () => reject(new Error(`could not load ${src}`));
        document.head.append(script);
      });
      hlsReady.catch(() => { hlsReady = null; });
    }
    return hlsReady;
  }

  class RecordingPlayer {
    constructor(section, onTime) {
      this.box = byId("playback");
      this.video = byId("archive-video");
      this.status = byId("playback-status");
      this.time = byId("playback-time");
      this.hlsSrc = section.dataset.hls;
      this.onTime = onTime;
      this.hls = null;
      this.segments = [];
      this.seekTo = 0;
      this.started = 0; // each play() counts: an answer for an older choice is dropped
      this.opener = null;
      this.end = 0;
      this.video.addEventListener("loadedmetadata", () => this.begin());
      this.video.addEventListener("timeupdate", () => this.tell());
      this.video.addEventListener("pause", () => this.tell());
      this.video.addEventListener("error", () => {
        // Only a recording being played fails (not the element emptied by detach()).
        const error = this.video.error;
        if (error && !this.box.hidden) this.failed(error.message || `media error ${error.code}`);
      });
      byId("playback-close").addEventListener("click", () => this.close());
      window.addEventListener("pagehide", () => this.detach());
    }

    say(text) {
      if (this.status.textContent !== text) this.status.textContent = text;
    }

    // Plays `span` (the whole recording: the controls can go anywhere in it) from `at`.
    async play(base, span, at, end) {
      const started = ++this.started;
      this.detach();
      this.time.textContent = "";
      this.end = end;
      if (this.box.hidden) this.opener = document.activeElement;
      this.box.hidden = false;
      this.box.dataset.start = span.start;
      this.box.dataset.end = span.end;
      this.say(`Loading the recording from ${clock(at, end)}…`);
      this.box.scrollIntoView({ block: "nearest" });
      const url = `${base}/archive/playlist.m3u8?start=${span.start}&end=${span.end}`;
      const response = await fetch(url, { credentials: "same-origin" });
      if (started !== this.started) return;
      if (!response.ok) {
        this.say("This recording is no longer in the archive (its days to keep are over).");
        return;
      }
      this.segments = parsePlaylist(await response.text());
      this.seekTo = positionOf(this.segments, at);
      await this.attach(url, started);
    }

    async attach(url, started) {
      if (this.video.canPlayType(HLS_TYPE)) {
        this.video.src = url;
        return;
      }
      let Hls;
      try {
        Hls = await loadHls(this.hlsSrc);
      } catch (error) {
        this.say("This browser has no HLS player of its own, and hls.js is not installed on " +
          "this server (scripts/setup.sh fetches it).");
        return;
      }
      if (started !== this.started) return;
      if (!Hls.isSupported()) {
        this.say("This browser cannot play the archive (it has neither HLS nor Media Source Extensions).");
        return;
      }
      // A worker would be a blob: script, which the console's CSP does not allow.
      this.hls = new Hls({ enableWorker: false });
      this.hls.on(Hls.Events.ERROR, (event, data) => {
        if (data.fatal) this.failed(data.details);
      });
      this.hls.loadSource(url);
      this.hls.attachMedia(this.video);
    }

    begin() {
      if (this.seekTo > 0) this.video.currentTime = this.seekTo;
      // Refused without a gesture in some browsers: the controls' play button works.
      this.video.play().catch(() => this.say("Press play to watch the recording."));
    }

    tell() {
      const at = timeOf(this.segments, this.video.currentTime);
      if (at === null) return;
      this.onTime(at);
      const text = `${this.video.paused ? "Paused at" : "Playing"} ${clock(at, this.end)} UTC`;
      if (this.time.textContent !== text) this.time.textContent = text;
      if (!this.video.paused) this.say(""); // "Loading…" or "Press play" are over
    }

    failed(why) {
      this.say(`${sentence(`the recording did not play: ${why}`)} Choose it again to retry.`);
    }

    detach() {
      if (this.hls !== null) this.hls.destroy();
      this.hls = null;
      this.segments = [];
      if (this.video.hasAttribute("src")) {
        this.video.removeAttribute("src");
        this.video.load(); // lets the old playlist and its buffers go
      }
    }

    close() {
      this.started += 1;
      this.detach();
      this.box.hidden = true;
      this.onTime(null);
      if (this.opener && this.opener.isConnected) this.opener.focus();
      this.opener = null;
    }
  }

  // --- the section ------------------------------------------------------------------------

  const STATES = {
    recording: "status-online",
    off: "status-offline",
    retrying: "status-waiting",
    waiting: "status-waiting",
  };

  class Archive {
    constructor(section) {
      this.base = section.dataset.base;
      this.spans = [];
      this.end = null;
      this.loading = false;
      this.again = false;
      this.gone = false;
      this.timeline = new Timeline(byId("timeline-bar"), byId("timeline-hours"),
        (span, at) => this.play(span, at),
        (at) => { byId("play-error").textContent = `Nothing was recorded around ${clock(at, this.end)}.`; });
      this.player = new RecordingPlayer(section, (at) => this.timeline.setMark(at));
      this.wireList();
      this.wirePlayFrom();
      this.wireRecording();
      // The page's camera deleted (console.js says so): nothing more to ask for.
      document.addEventListener("camera:update", (event) => {
        if (event.detail.status === "deleted") this.gone = true;
      });
      this.refresh();
      window.setInterval(() => { if (!document.hidden) this.refresh(); }, REFRESH_MS);
      document.addEventListener("visibilitychange", () => { if (!document.hidden) this.refresh(); });
    }

    play(span, at) {
      byId("play-error").textContent = "";
      this.player.play(this.base, span, at, this.end);
    }

    async refresh() {
      if (this.gone) return;
      if (this.loading) {
        this.again = true; // e.g. a setting saved while the timer's refresh was out
        return;
      }
      this.loading = true;
      this.again = false;
      try {
        const result = await call("GET", `${this.base}/archive`);
        if (!result.ok) {
          // Deleted (the page says so): asking again every few seconds helps nobody.
          this.gone = result.status === 404;
          byId("archive-state").textContent = `The archive cannot be shown: ${errorText(result)}.`;
          return;
        }
        // The range the cloud answered for ends at its own "now" (the mock's clock).
        const now = Number.isFinite(result.data.to) ? result.data.to : Date.now() / 1000;
        this.show(result.data, now);
      } finally {
        this.loading = false;
        if (this.again) this.refresh();
      }
    }

    show(data, end) {
      this.end = end;
      this.spans = data.spans;
      const state = byId("archive-state");
      state.replaceChildren(
        el("span", { class: `status ${STATES[data.state] || ""}`, text: data.state }),
        " ", sentence(data.message));
      const readonly = byId("recording-readonly");
      if (readonly) $("strong", readonly).textContent = recordingText(data.recording);
      this.timeline.update(end, data.spans);
      this.list(data.spans, end);
      const input = byId("play-at");
      input.min = toLocalInput(end - DAY_S);
      input.max = toLocalInput(end);
      const newest = data.spans[data.spans.length - 1];
      if (!input.value && newest) input.value = toLocalInput(newest.start);
    }

    // Newest first, updated in place (keyed by start): the growing newest recording must
    // not take the keyboard focus away from a button in the list.
    list(spans, end) {
      const ul = byId("spans");
      const shown = spans.slice(-LISTED).reverse();
      const keep = new Set(shown.map((span) => String(span.start)));
      for (const li of Array.from(ul.children)) if (!keep.has(li.dataset.start)) li.remove();
      shown.forEach((span, i) => {
        let li = Array.from(ul.children).find((item) => item.dataset.start === String(span.start));
        if (!li) li = this.item(span);
        if (ul.children[i] !== li) ul.insertBefore(li, ul.children[i] || null);
        this.describe(li, span, end);
      });
      byId("no-spans").hidden = spans.length > 0;
      const more = byId("more-spans");
      more.hidden = spans.length <= LISTED;
      more.textContent = `${spans.length - LISTED} earlier recording(s): tap the bar or use ` +
        "Play from to watch them.";
    }

    item(span) {
      return el("li", { "data-start": String(span.start) },
        el("span", { class: "span-time" }),
        el("button", { type: "button", class: "secondary", "data-play": "", text: "Play" }));
    }

    describe(li, span, end) {
      li.dataset.end = String(span.end);
      const when = `${clock(span.start, end)} – ${clock(span.end, end)}`;
      const text = `${when} · ${duration(span.end - span.start)}`;
      const label = $(".span-time", li);
      if (label.textContent !== text) label.textContent = text;
      $("button", li).setAttribute("aria-label", `Play the recording of ${when} UTC`);
    }

    wireList() {
      byId("spans").addEventListener("click", (event) => {
        const button = event.target.closest("[data-play]");
        if (!button) return;
        const li = button.closest("li");
        const span = { start: Number(li.dataset.start), end: Number(li.dataset.end) };
        this.play(span, span.start);
      });
    }

    // "Play from": the recording at that time, else the next one after it.
    wirePlayFrom() {
      const input = byId("play-at");
      const error = byId("play-error");
      byId("play-from").addEventListener("submit", (event) => {
        event.preventDefault();
        error.textContent = "";
        const at = fromLocalInput(input.value);
        if (!Number.isFinite(at)) {
          error.textContent = "Type a date and time to play from.";
          return;
        }
        const span = this.spans.find((s) => s.end > at);
        if (!span) {
          error.textContent = `Nothing was recorded at ${toLocalInput(at).replace("T", " ")} UTC or after it.`;
          return;
        }
        this.play(span, Math.max(at, span.start));
      });
    }

    wireRecording() {
      const form = byId("recording-form");
      if (!form) return; // a viewer: the setting is a sentence
      const days = byId("retention-days");
      const saved = byId("recording-saved");
      days.addEventListener("input", () => days.removeAttribute("aria-invalid"));
      form.addEventListener("submit", async (event) => {
        event.preventDefault();
        const body = { mode: byId("recording-mode").value, retention_days: Number(days.value) };
        if (!Number.isInteger(body.retention_days) || body.retention_days < Number(days.min) ||
            body.retention_days > Number(days.max)) {
          days.setAttribute("aria-invalid", "true");
          saved.textContent = `Days to keep: a whole number from ${days.min} to ${days.max}.`;
          days.focus();
          return;
        }
        const button = $("button[type=submit]", form);
        if (!busy(button, true)) return;
        saved.textContent = "Saving…";
        const result = await call("PUT", `${this.base}/recording`, body);
        busy(button, false);
        saved.textContent = result.ok
          ? `Saved: recording ${recordingText(result.data)}.`
          : `Not saved: ${errorText(result)}.`;
        this.refresh();
      });
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    const section = byId("archive");
    if (section) new Archive(section); // eslint-disable-line no-new
  });
})();
