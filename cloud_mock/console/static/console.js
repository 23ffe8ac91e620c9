// camagent cloud console: the live and interactive parts of the server-rendered pages.
// Every change goes to /console/api/v1/... (the JSON API behind a CSRF check).
"use strict";

const mayChange = () => document.body.dataset.mayChange === "yes";
const csrf = () => document.querySelector('meta[name="csrf-token"]').content;
const $ = (selector, root = document) => root.querySelector(selector);
const $$ = (selector, root = document) => Array.from(root.querySelectorAll(selector));

function when(at) {
  if (at === null || at === undefined) return "never";
  return new Date(at * 1000).toISOString().replace("T", " ").slice(0, 19) + " UTC";
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

async function call(method, path, body) {
  const options = { method, headers: { "X-CSRF-Token": csrf() }, credentials: "same-origin" };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  let data = null;
  if (response.status !== 204) {
    try { data = await response.json(); } catch (error) { data = null; }
  }
  if (response.status === 401 && path.startsWith("/console/api/")) {
    window.location.assign("/login");
  }
  // `date`: the mock clock's time of the answer (its Date header), for what is drawn
  // against the mock's own "now" (the archive's timeline).
  const date = Date.parse(response.headers.get("Date") || "");
  return { status: response.status, ok: response.ok, data: data || {}, date: date / 1000 };
}

// Marks a button as working (aria-disabled, not `disabled`: a disabled button loses the
// keyboard focus); false when it already was, so a second press does nothing.
function busy(button, on) {
  if (on && button.getAttribute("aria-disabled") === "true") return false;
  if (on) button.setAttribute("aria-disabled", "true");
  else button.removeAttribute("aria-disabled");
  return true;
}

const api = (method, path, body) => call(method, "/console/api/v1" + path, body);
const errorText = (result) => result.data.message || result.data.error || `error ${result.status}`;
// The API names a field by its key ("field 'days' must be from 1 to 365"); a person reads
// the label beside the input: "Days to keep must be from 1 to 365."
const SETTING_LABELS = {
  days: "Days to keep", quality: "Quality", cameras: "Cameras", enabled: "Enabled",
};
function fieldErrorText(result, labels = SETTING_LABELS) {
  const text = errorText(result);
  const match = /^field '(\w+)' (.*)$/.exec(text);
  if (!match || !labels[match[1]]) return text;
  return `${labels[match[1]]} ${match[2].replace(/\.$/, "")}.`;
}

function statusBadge(status) {
  return el("span", { class: `status status-${status}`, text: status });
}

// A camera's status; `moved` (another account's claim won the camera) says when.
function cameraStatus(camera) {
  if (camera.status !== "moved") return statusBadge(camera.status);
  const note = "to another account" + (camera.moved_at ? `, ${when(camera.moved_at)}` : "");
  return el("span", {}, statusBadge(camera.status), " ", el("span", { class: "small muted", text: note }));
}

async function copyFrom(id, button) {
  const source = document.getElementById(id);
  const text = source.value !== undefined ? source.value : source.textContent;
  const note = $("[data-copy-status]", button.closest("section, div.card, #token-result") || document);
  if (source.select) source.select();
  else window.getSelection().selectAllChildren(source);
  let done = false;
  try {
    await navigator.clipboard.writeText(text);
    done = true;
  } catch (error) {
    done = document.execCommand && document.execCommand("copy");
  }
  if (note) note.textContent = done ? "Copied." : "Selected: press Ctrl+C to copy.";
}

function wireCopyButtons() {
  for (const button of $$("[data-copy]")) {
    button.addEventListener("click", () => copyFrom(button.dataset.copy, button));
  }
}

// --- live status (Server-Sent Events) ----------------------------------------------------

// Updates a table in place (rows added, changed, removed) so that focus and the keyboard
// position survive a status change; only the cells that change are replaced.
function syncRows(tbody, items, key, build, update) {
  const wanted = new Set(items.map((item) => item[key]));
  for (const row of Array.from(tbody.rows)) {
    if (!wanted.has(row.dataset.key)) row.remove();
  }
  for (const item of items) {
    let row = Array.from(tbody.rows).find((r) => r.dataset.key === item[key]);
    if (!row) {
      row = build(item);
      row.dataset.key = item[key];
      tbody.append(row);
    }
    update(row, item);
  }
}

function setCell(row, column, content) {
  const cell = $(`[data-col="${column}"]`, row);
  if (typeof content === "string") {
    if (cell.textContent !== content) cell.textContent = content;
  } else if (cell.innerHTML !== content.outerHTML) {
    cell.replaceChildren(content);
  }
}

function liveStatus(onStatus) {
  const source = new EventSource("/console/events");
  source.addEventListener("status", (event) => onStatus(JSON.parse(event.data)));
  source.addEventListener("logout", () => window.location.assign("/login"));
  window.addEventListener("pagehide", () => source.close());
}

// --- login ---------------------------------------------------------------------------------

function loginPage() {
  const form = $("#login-form");
  const error = $("#login-error");
  const captcha = $("#captcha");
  const dialog = $("#sessions-dialog");
  let captchaId = "";

  function showCaptcha(data) {
    captchaId = data.captcha_id;
    $("#captcha-image").dataset.captchaId = data.captcha_id;
    $("#captcha-image").src = "data:image/png;base64," + data.image;
    $("#captcha-answer").value = "";
    $("#captcha-hint").textContent = `The picture is valid for ${data.expires_in} s.`;
    captcha.hidden = false;
  }

  $("#captcha-refresh").addEventListener("click", async () => {
    // A refresh replaces this captcha only (people behind one address keep theirs).
    const result = await call(
      "GET", "/v1/auth/captcha?replaces=" + encodeURIComponent(captchaId));
    if (result.ok) {
      showCaptcha(result.data);
      error.textContent = "";
      $("#captcha-answer").focus();
    } else error.textContent = errorText(result);
  });

  async function submit() {
    error.textContent = "";
    const body = { login: $("#login").value, password: $("#password").value };
    if (!body.login || !body.password) {
      error.textContent = "Type your login and password.";
      return;
    }
    if (captchaId) {
      body.captcha_id = captchaId;
      body.captcha_answer = $("#captcha-answer").value;
    }
    const result = await call("POST", "/console/login", body);
    if (result.ok) {
      window.location.assign(form.dataset.next || result.data.next || "/cameras");
      return;
    }
    captchaId = "";
    if (result.status === 428) {
      const first = captcha.hidden;
      showCaptcha(result.data);
      error.textContent = first
        ? "Type the characters in the picture, then log in."
        : `${result.data.message || "Wrong characters"}.`.replace(/^./, (c) => c.toUpperCase());
      $("#captcha-answer").focus();
    } else if (result.status === 409 && result.data.error === "too_many_sessions") {
      showSessions(result.data);
    } else if (result.status === 429) {
      error.textContent = `Too many failed logins: try again in ${result.data.retry_after} s.`;
    } else if (result.status === 401) {
      error.textContent = "Wrong login or password.";
    } else {
      error.textContent = errorText(result);
    }
  }

  function showSessions(data) {
    $("#sessions-text").textContent =
      `You already have ${data.sessions.length} session(s) open; the most allowed is ` +
      `${data.max_sessions}. End one to log in here.`;
    $("#sessions-error").textContent = "";
    const rows = $("#sessions-rows");
    rows.replaceChildren();
    for (const session of data.sessions) {
      const button = el("button", { type: "button", class: "danger", text: "End session" });
      button.addEventListener("click", async () => {
        const ended = await call("POST", "/console/login/end-session", {
          session_id: session.id,
          resolve_token: data.resolve_token,
        });
        if (!ended.ok) {
          $("#sessions-error").textContent = errorText(ended);
          return;
        }
        dialog.close();
        await submit(); // retry the login now that there is room
      });
      rows.append(
        el("tr", {},
          el("td", { class: "title", text: session.device }),
          el("td", { "data-label": "Software", text: session.software }),
          el("td", { class: "time", "data-label": "Started", text: when(session.started) }),
          el("td", { class: "time", "data-label": "Last activity", text: when(session.last_activity) }),
          el("td", { class: "row-actions" }, button)),
      );
    }
    dialog.showModal();
  }

  $("#sessions-cancel").addEventListener("click", () => dialog.close());
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    submit();
  });
}

// --- cameras -------------------------------------------------------------------------------

// A video source's newest thumbnail (through the gateway; its time in the URL, so a new
// one is fetched, never a cached one), or a box of the same size with the reason there is
// none (as macros.html); `blocked` is a reason known here that overrides the picture.
function thumbnail(video, name, blocked = null) {
  const shot = video && !blocked ? video.thumbnail : null;
  if (shot) {
    // The attributes in the template's order: setCell compares the markup, and the
    // same picture must not be fetched again.
    return el("img", {
      class: "thumb", src: `/console/api${shot.url}?t=${shot.at}`,
      width: "160", height: "90", alt: `Latest picture from ${name}`,
    });
  }
  const reason = blocked || (video && video.thumbnail_reason) || "No picture yet";
  return el("span", { class: "thumb thumb-none", text: reason });
}

function cameraRow(camera) {
  const del = mayChange()
    ? el("button", {
      type: "button", class: "danger", "data-delete-camera": camera.camera_id,
      "data-name": camera.name, text: "Delete",
    })
    : "";
  return el("tr", { "data-camera-id": camera.camera_id },
    el("td", { class: "picture", "data-col": "thumbnail" }),
    el("td", { class: "title" },
      el("a", { href: `/cameras/${encodeURIComponent(camera.camera_id)}`, text: camera.name })),
    el("td", { "data-label": "ID" }, el("code", { text: camera.device_id })),
    el("td", {}),
    el("td", { "data-col": "status", "data-label": "Status" }, cameraStatus(camera)),
    el("td", { "data-col": "last-seen", "data-label": "Last seen", text: when(camera.last_seen) }),
    el("td", { class: "row-actions" }, del));
}

// --- cameras of NVRs ------------------------------------------------------------------------

function nvrCameraPath(registrator, camera) {
  return `/registrators/${encodeURIComponent(registrator.id)}/cameras/${encodeURIComponent(camera.name)}`;
}

// The API serves no thumbnail of an NVR camera that Broadcast leaves out, even one taken
// before (cloud_mock.video.thumbnails.BROADCAST_OFF, as macros.html's nvr_thumbnail).
const BROADCAST_OFF = "live view is off for this camera (the registrator's Broadcast settings)";

function nvrThumbnail(registrator, camera) {
  const blocked = liveAllowed(registrator, camera.name) ? null : BROADCAST_OFF;
  return thumbnail(camera.video, camera.name, blocked);
}

function nvrCameraLink(registrator, camera) {
  return el("a", { href: nvrCameraPath(registrator, camera), text: camera.name });
}

// Whether the registrator's Broadcast settings let an NVR camera stream live: a list of
// names that holds it, or no list (pages.live_allowed, the API's rule).
function liveAllowed(registrator, name) {
  const allowed = registrator.broadcast ? registrator.broadcast.cameras : null;
  return !Array.isArray(allowed) || allowed.includes(name);
}

// Whether an NVR's camera answers, instead of "online" (as macros.html's reachability).
function reachability(registrator, camera) {
  const video = camera.video || {};
  const badge = (cls, text) => el("span", { class: `status ${cls}`, text });
  const box = el("span", { class: "reach" });
  if (registrator.status !== "online") {
    box.append(badge("status-offline", `NVR ${registrator.status}`));
  } else if (video.reachable === true) {
    box.append(badge("status-online", "answers" + (video.codec ? ` · ${video.codec}` : "")));
  } else if (video.reachable === false) {
    box.append(badge("status-unreachable", "no answer"), " ",
      el("span", { class: "small", text: video.detail || "" }));
  } else {
    box.append(badge("", "not checked yet"));
    if (video.detail) box.append(" ", el("span", { class: "small muted", text: video.detail }));
  }
  return box;
}

function recordingText(recording) {
  if (!recording || recording.mode !== "continuous") return "off";
  const days = recording.retention_days;
  return `continuous, kept ${days} day${days === 1 ? "" : "s"}`;
}

// An NVR camera as the live player follows it (as pages.nvr_camera_source).
function nvrSource(registrator, camera) {
  return {
    kind: "nvr_camera",
    name: camera.name,
    status: registrator.status,
    video: camera.video || null,
    live: liveAllowed(registrator, camera.name),
  };
}

// The Broadcast setting's camera checkboxes (as macros.html's broadcast_cameras);
// `checked` keeps what the person ticked before a Sync changed the list.
function broadcastCameras(registrator, checked = new Map()) {
  const cameras = registrator.cameras || [];
  if (!cameras.length) {
    return el("p", {
      class: "hint",
      text: "Which of the NVR's cameras stream live can be chosen after Sync (which imports " +
        "them); until then all of them do.",
    });
  }
  const boxes = cameras.map((camera) => {
    const input = el("input", { type: "checkbox", name: "broadcast-camera", value: camera.name });
    input.checked = checked.has(camera.name) ? checked.get(camera.name) : liveAllowed(registrator, camera.name);
    return el("label", { class: "check" }, input, ` ${camera.name}`);
  });
  return el("fieldset", { class: "choices camera-choices" },
    el("legend", { text: "Cameras with live view" }), ...boxes,
    el("p", { class: "hint", text: "With all of them checked, cameras a later Sync adds stream too." }));
}

// The `cameras` of a Broadcast body: the names checked; null (all, also later ones) when
// all are; undefined (keep what is stored) when there is nothing to choose from.
function chosenCameras(container) {
  const boxes = $$('input[name="broadcast-camera"]', container);
  if (!boxes.length) return undefined;
  if (boxes.every((box) => box.checked)) return null;
  return boxes.filter((box) => box.checked).map((box) => box.value);
}

// After a Sync the list of names differs: the checkboxes follow, keeping what was ticked.
function refreshBroadcastCameras(container, registrator) {
  const boxes = $$('input[name="broadcast-camera"]', container);
  const names = (registrator.cameras || []).map((camera) => camera.name);
  if (names.join("\n") === boxes.map((box) => box.value).join("\n")) return;
  const checked = new Map(boxes.map((box) => [box.value, box.checked]));
  container.replaceChildren(broadcastCameras(registrator, checked));
}

// A camera an NVR listed at its last Sync, with its registrator (cameras page).
function nvrCameraRow() {
  return el("tr", {},
    el("td", { class: "picture", "data-col": "thumbnail" }),
    el("td", { class: "title", "data-col": "name" }),
    el("td", {}),
    el("td", { "data-col": "registrator", "data-label": "Registrator" }),
    el("td", { "data-col": "status", "data-label": "Status" }),
    el("td", { "data-col": "last-seen", "data-label": "Last seen" }),
    el("td", { class: "row-actions" }));
}

async function deleteCamera(button) {
  const name = button.dataset.name;
  if (!window.confirm(`Delete camera ${name}? Its token is revoked and it starts provisioning again.`)) return;
  const result = await api("DELETE", `/cameras/${encodeURIComponent(button.dataset.deleteCamera)}`);
  const live = $("#live");
  if (!result.ok) {
    live.textContent = errorText(result);
    return;
  }
  if (button.dataset.then) window.location.assign(button.dataset.then);
  else {
    const row = button.closest("tr");
    if (row) row.remove();
    live.textContent = `Camera ${name} deleted.`;
  }
}

function wireDeletes() {
  document.addEventListener("click", (event) => {
    const button = event.target.closest("[data-delete-camera]");
    if (button) deleteCamera(button);
  });
}

function wireAddCamera(seen) {
  const toggle = $("#add-camera-toggle");
  const section = $("#add-camera");
  const form = $("#add-camera-form");
  if (!toggle) return; // a viewer: no form

  function setOpen(open) {
    section.hidden = !open;
    toggle.setAttribute("aria-expanded", String(open));
    if (open) $("#cam-device").focus();
    else toggle.focus();
  }
  toggle.addEventListener("click", () => setOpen(section.hidden));
  $("#cam-show-password").addEventListener("change", (event) => {
    $("#cam-password").type = event.target.checked ? "text" : "password";
  });
  $("#add-camera-cancel").addEventListener("click", () => setOpen(false));
  section.addEventListener("keydown", (event) => { if (event.key === "Escape") setOpen(false); });
  // An error about one field goes beside it (aria-invalid, described by it); the rest
  // below the form. What was typed stays.
  const fields = { device_id: $("#cam-device"), password: $("#cam-password") };
  function fieldOf(result) {
    if (result.data.field in fields) return result.data.field;
    const text = errorText(result);
    if (/device[ _]id/i.test(text)) return "device_id";
    if (/password/i.test(text)) return "password";
    return null;
  }
  function showError(field, text) {
    const input = fields[field];
    if (!input) { $("#add-camera-error").textContent = text; return; }
    $(`#${input.id}-error`).textContent = text;
    input.setAttribute("aria-invalid", "true");
    input.focus();
  }
  function clearErrors() {
    $("#add-camera-error").textContent = "";
    for (const input of Object.values(fields)) {
      input.removeAttribute("aria-invalid");
      $(`#${input.id}-error`).textContent = "";
    }
  }
  for (const input of Object.values(fields)) {
    input.addEventListener("input", () => {
      input.removeAttribute("aria-invalid");
      $(`#${input.id}-error`).textContent = "";
    });
  }
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors();
    const body = {
      device_id: $("#cam-device").value.trim(),
      password: $("#cam-password").value,
      name: $("#cam-name").value.trim(),
    };
    if (!body.device_id) { showError("device_id", "Type the camera's MAC (or its camera ID)."); return; }
    if (!body.password) { showError("password", "Type the device password from the camera's label."); return; }
    const result = await api("POST", "/cameras", body);
    if (!result.ok) {
      showError(fieldOf(result), errorText(result));
      return;
    }
    form.reset();
    setOpen(false);
    const name = body.name || result.data.device_id;
    // The event stream may have shown the new camera before this answer came.
    const status = seen.get(result.data.camera_id);
    $("#live").textContent = status && status !== "waiting"
      ? `Camera ${name} added. ${name} is ${status}.`
      : `Camera ${name} added: waiting for it to connect.`;
  });
}

function camerasPage() {
  const rows = $("#camera-rows");
  const seen = new Map($$("tr[data-camera-id]", rows).map((row) =>
    [row.dataset.cameraId, $("[data-col=status] .status", row).textContent.trim()]));
  wireAddCamera(seen);
  wireDeletes();

  liveStatus((data) => {
    const changes = [];
    syncRows(rows, data.cameras, "camera_id", cameraRow, (row, camera) => {
      setCell(row, "thumbnail", thumbnail(camera.video, camera.name));
      setCell(row, "status", cameraStatus(camera));
      setCell(row, "last-seen", when(camera.last_seen));
    });
    const nvrCameras = data.registrators.flatMap((registrator) =>
      (registrator.cameras || []).map((camera, i) => ({ key: `${registrator.id}/${i}`, camera, registrator })));
    syncRows($("#nvr-camera-rows"), nvrCameras, "key", nvrCameraRow, (row, item) => {
      setCell(row, "name", nvrCameraLink(item.registrator, item.camera));
      setCell(row, "thumbnail", nvrThumbnail(item.registrator, item.camera));
      setCell(row, "registrator", el("a", {
        href: `/registrators/${encodeURIComponent(item.registrator.id)}`, text: item.registrator.name,
      }));
      setCell(row, "status", reachability(item.registrator, item.camera));
      setCell(row, "last-seen", when(item.registrator.last_seen));
    });
    for (const camera of data.cameras) {
      const before = seen.get(camera.camera_id);
      if (before !== camera.status && (before !== undefined || camera.status !== "waiting")) {
        changes.push(camera.status === "moved"
          ? `${camera.name} moved to another account.`
          : `${camera.name} is ${camera.status}.`);
      }
      seen.set(camera.camera_id, camera.status);
    }
    $("#no-cameras").hidden = data.cameras.length + nvrCameras.length > 0;
    if (changes.length) $("#live").textContent = changes.join(" ");
  });
}

// "Reset camera": a dialog says what a reset does; the command goes over the camera's
// channel, so the button is off (saying why) while the camera is not online.
function wireReset(path) {
  const button = $("#reset-camera");
  const dialog = $("#reset-dialog");
  if (!button) return () => {};
  button.addEventListener("click", () => {
    $("#reset-error").textContent = "";
    dialog.showModal();
    $("#reset-cancel").focus(); // the safe choice first
  });
  $("#reset-cancel").addEventListener("click", () => dialog.close());
  $("#reset-confirm").addEventListener("click", async () => {
    const confirm = $("#reset-confirm");
    if (!busy(confirm, true)) return;
    const result = await api("POST", `${path}/commands`, { name: "reset" });
    busy(confirm, false);
    if (!result.ok || !result.data.ok) {
      $("#reset-error").textContent = `Not reset: ${result.ok ? result.data.data : errorText(result)}`;
      return;
    }
    dialog.close();
    $("#reset-result").textContent =
      "Reset sent: the camera forgot its token and is provisioning again.";
    button.focus();
  });
  return (camera) => {
    const online = camera.status === "online";
    button.disabled = !online;
    $("#reset-why").textContent = online ? "" : "A reset is sent over the camera's " +
      `connection: it needs the camera online (it is ${camera.status}).`;
  };
}

// "Correct the password" of a waiting camera (PATCH: the API takes it until a device
// has proven the claim).
function wirePasswordForm(path) {
  const section = $("#password-section");
  if (!section) return () => {};
  const input = $("#new-password");
  const error = $("#new-password-error");
  const result = $("#password-result");
  const clear = () => { input.removeAttribute("aria-invalid"); error.textContent = ""; };
  $("#show-new-password").addEventListener("change", (event) => {
    input.type = event.target.checked ? "text" : "password";
  });
  input.addEventListener("input", clear);
  $("#password-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    clear();
    result.textContent = "";
    const fail = (text) => { error.textContent = text; input.setAttribute("aria-invalid", "true"); input.focus(); };
    if (!input.value) { fail("Type the password printed on the camera's label."); return; }
    const button = $("button[type=submit]", section);
    if (!busy(button, true)) return;
    const answer = await api("PATCH", path, { password: input.value });
    busy(button, false);
    if (!answer.ok) { fail(errorText(answer)); return; }
    $("#password-form").reset();
    result.textContent = "Password corrected: the camera will connect at its next poll " +
      "(within a minute while it is new; one that has waited long polls less often, and " +
      "switching it off and on makes it poll at once).";
  });
  return (camera) => {
    // Once the camera connected the form has done its work; its result stays in view.
    const waiting = camera.status === "waiting";
    $("#password-ask").hidden = !waiting;
    section.hidden = !waiting && !result.textContent;
  };
}

// "Token for this camera": the sealed token to copy, and a QR card of it (WiFi too, if
// asked) drawn by the server; the WiFi name and password go into the picture only.
function wireTokenCard(cameraId) {
  const form = $("#token-form");
  if (!form) return;
  const fields = $("#card-wifi-fields");
  const error = $("#card-error");
  const withWifi = $("#card-wifi");
  withWifi.addEventListener("change", () => { fields.hidden = !withWifi.checked; });
  $("#copy-token").addEventListener("click", (event) => copyFrom("sealed-token", event.target));
  $("#print-card").addEventListener("click", () => window.print());
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    const button = $("button[type=submit]", form);
    let wifi = null;
    if (withWifi.checked) {
      const ssid = $("#card-ssid").value;
      if (!ssid) { error.textContent = "Type the network name."; $("#card-ssid").focus(); return; }
      wifi = {
        ssid,
        password: $("#card-wifi-password").value,
        security: $("#card-security").value,
        hidden: $("#card-hidden").checked,
      };
    }
    if (!busy(button, true)) return;
    const answer = await call("POST", `/console/cameras/${encodeURIComponent(cameraId)}/card`, { wifi });
    busy(button, false);
    if (!answer.ok) { error.textContent = errorText(answer); return; }
    $("#sealed-token").value = answer.data.sealed_token;
    $("#token-card-image").src = "data:image/png;base64," + answer.data.image;
    $("#token-card-caption").textContent = answer.data.kind === "combined"
      ? `WiFi "${wifi.ssid}" and the token: hold it in front of the camera.`
      : "The token: hold it in front of the camera.";
    $("#card-wifi-password").value = "";
    $("#token-result").hidden = false;
  });
}

function cameraPage() {
  wireDeletes();
  const facts = $("dl[data-camera-id]");
  const path = `/cameras/${encodeURIComponent(facts.dataset.cameraId)}`;
  wireTokenCard(facts.dataset.cameraId);
  const followers = [wireReset(path), wirePasswordForm(path)];
  let status = null;
  liveStatus((data) => {
    const camera = data.cameras.find((c) => c.camera_id === facts.dataset.cameraId);
    if (!camera) {
      $("#live").textContent = "This camera was deleted.";
      document.dispatchEvent(new CustomEvent("camera:update", { detail: { status: "deleted" } }));
      return;
    }
    $("[data-col=status]", facts).replaceChildren(cameraStatus(camera));
    $("[data-col=last-seen]", facts).textContent = when(camera.last_seen);
    if (status !== null && status !== camera.status) {
      $("#live").textContent = `${camera.name} is ${camera.status}.`;
    }
    status = camera.status;
    for (const follow of followers) follow(camera);
    // player.js (the live view) follows the camera too.
    document.dispatchEvent(new CustomEvent("camera:update", { detail: camera }));
  });
}

// --- registrators --------------------------------------------------------------------------

function cameraNames(registrator) {
  if (!registrator.cameras || registrator.cameras.length === 0) {
    return el("span", { class: "muted", text: "none synced" });
  }
  return el("ul", { class: "inline" }, ...registrator.cameras.map((c) => el("li", { text: c.name })));
}

function registratorRow(registrator) {
  const actions = [];
  if (mayChange() && !registrator.device_id && !registrator.let_go) {
    actions.push(el("a", {
      class: "button secondary", "data-continue": "",
      href: `/registrators/new?registrator=${encodeURIComponent(registrator.id)}`,
      "aria-label": `Continue setting up ${registrator.name}`, text: "Continue setup",
    }), " ");
  }
  if (mayChange()) {
    actions.push(el("button", {
      type: "button", class: "secondary", "data-sync": registrator.id,
      "aria-label": `Sync ${registrator.name}`, text: "Sync",
    }));
  }
  return el("tr", { "data-registrator-id": registrator.id },
    el("td", { class: "title" },
      el("a", { href: `/registrators/${encodeURIComponent(registrator.id)}`, text: registrator.name }),
      el("div", { class: "muted small", text: registrator.note }),
      ...(registrator.let_go ? [el("div", { class: "small", "data-let-go": "", text: registrator.let_go })] : [])),
    el("td", { "data-col": "status", "data-label": "Status" }),
    el("td", { "data-col": "device", "data-label": "NVR" }),
    el("td", { "data-col": "cameras", "data-label": "Cameras" }),
    el("td", { "data-col": "last-seen", "data-label": "Last seen" }),
    el("td", { class: "row-actions" }, ...actions));
}

// Sync buttons ([data-sync]): ask the NVR for its cameras; the result goes to `status`.
function wireSyncButtons(status) {
  async function sync(button) {
    if (!busy(button, true)) return;
    status.textContent = "Syncing…";
    const result = await api("POST", `/registrators/${encodeURIComponent(button.dataset.sync)}/sync`);
    busy(button, false);
    status.textContent = result.ok
      ? `Synced: ${result.data.cameras.length} camera(s).`
      : `Sync failed: ${errorText(result)}`;
  }
  document.addEventListener("click", (event) => {
    const button = event.target.closest("[data-sync]");
    if (button) sync(button);
  });
}

function registratorsPage() {
  const status = $("#sync-status");
  wireSyncButtons(status);
  $("#sync-all")?.addEventListener("click", async () => {
    status.textContent = "Syncing all…";
    const result = await api("POST", "/registrators/sync-all");
    if (!result.ok) {
      status.textContent = `Sync all failed: ${errorText(result)}`;
      return;
    }
    const failed = result.data.results.filter((r) => !r.ok);
    status.textContent = `Synced ${result.data.results.length - failed.length} of ` +
      `${result.data.results.length} registrator(s).` +
      failed.map((r) => ` ${r.name}: ${r.error}.`).join("");
  });
  const rows = $("#registrator-rows");
  liveStatus((data) => {
    syncRows(rows, data.registrators, "id", registratorRow, (row, registrator) => {
      setCell(row, "status", statusBadge(registrator.status));
      setCell(row, "device", el("code", { text: registrator.device_id || "not linked" }));
      setCell(row, "cameras", cameraNames(registrator));
      setCell(row, "last-seen", when(registrator.last_seen));
      const link = $("[data-continue]", row);
      if (link) link.hidden = Boolean(registrator.device_id || registrator.let_go);
    });
    $("#no-registrators").hidden = data.registrators.length > 0;
  });
}

// One registrator: live status, Sync, Broadcast and Archive, Delete with a confirmation.
function registratorPage() {
  const facts = $("#registrator");
  const id = facts.dataset.registratorId;
  const path = `/registrators/${encodeURIComponent(id)}`;
  wireSyncButtons($("#live"));

  function wireSettings(form, what, body) {
    const saved = $("[data-saved]", form);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const button = $("button[type=submit]", form);
      if (!busy(button, true)) return;
      saved.textContent = "Saving…";
      const result = await api("PUT", `${path}/${what}`, body());
      busy(button, false);
      if (!result.ok) { saved.textContent = `Not saved: ${fieldErrorText(result)}`; return; }
      saved.textContent = result.data.applied
        ? "Saved; the NVR took the settings."
        : `Saved; ${result.data.reason || "the NVR did not take them yet"}.`;
    });
  }
  wireSettings($("#broadcast-form"), "broadcast", () => ({
    enabled: $("#broadcast-enabled").checked,
    quality: $("#broadcast-quality").value,
    cameras: chosenCameras($("#broadcast-cameras")),
  }));
  wireSettings($("#archive-form"), "archive", () => ({
    enabled: $("#archive-enabled").checked, days: Number($("#archive-days").value),
  }));

  const dialog = $("#delete-dialog");
  if (dialog) {
    $("#delete-registrator").addEventListener("click", () => {
      $("#delete-error").textContent = "";
      dialog.showModal();
      $("#delete-cancel").focus(); // the safe choice first
    });
    $("#delete-cancel").addEventListener("click", () => dialog.close());
    $("#delete-confirm").addEventListener("click", async () => {
      const result = await api("DELETE", path);
      if (!result.ok) { $("#delete-error").textContent = errorText(result); return; }
      window.location.assign("/registrators");
    });
  }

  liveStatus((data) => {
    const registrator = data.registrators.find((r) => r.id === id);
    if (!registrator) {
      $("#live").textContent = "This registrator was deleted.";
      return;
    }
    $("[data-col=status]", facts).replaceChildren(statusBadge(registrator.status));
    $("[data-col=device]", facts).replaceChildren(el("code", { text: registrator.device_id || "not linked" }));
    $("[data-col=last-seen]", facts).textContent = when(registrator.last_seen);
    syncCameraRows(registrator);
    refreshBroadcastCameras($("#broadcast-cameras"), registrator);
  });
}

// The registrator page's cameras: picture, own page, whether each answers, live, recording.
function registratorCameraRow() {
  return el("tr", {},
    el("td", { class: "picture", "data-col": "thumbnail" }),
    el("td", { class: "title", "data-col": "name" }),
    el("td", { "data-col": "reach", "data-label": "Camera" }),
    el("td", { "data-col": "live", "data-label": "Live view" }),
    el("td", { "data-col": "recording", "data-label": "Recording" }));
}

function syncCameraRows(registrator) {
  const cameras = (registrator.cameras || []).map((camera) => ({ key: camera.name, camera }));
  syncRows($("#registrator-camera-rows"), cameras, "key", registratorCameraRow, (row, { camera }) => {
    setCell(row, "thumbnail", nvrThumbnail(registrator, camera));
    setCell(row, "name", nvrCameraLink(registrator, camera));
    setCell(row, "reach", reachability(registrator, camera));
    setCell(row, "live", liveAllowed(registrator, camera.name) ? "on" : "off");
    setCell(row, "recording", recordingText(camera.video ? camera.video.recording : null));
  });
  $("#no-nvr-cameras").hidden = cameras.length > 0;
}

// One camera of an NVR: the NVR's status, whether the camera answers and may stream
// live, passed on to the live player (player.js) as for a camera.
function nvrCameraPage() {
  const facts = $("#nvr-camera");
  const { registratorId, name } = facts.dataset;
  const update = (detail) => document.dispatchEvent(new CustomEvent("camera:update", { detail }));
  liveStatus((data) => {
    const registrator = data.registrators.find((r) => r.id === registratorId);
    const camera = registrator && (registrator.cameras || []).find((c) => c.name === name);
    if (!camera) {
      $("#live").textContent = registrator
        ? "This camera is no longer on the NVR's list (a Sync removed it)."
        : "This registrator was deleted.";
      update({ kind: "nvr_camera", name, status: "deleted" });
      return;
    }
    setCell(facts, "status", statusBadge(registrator.status));
    setCell(facts, "reach", reachability(registrator, camera));
    setCell(facts, "live", liveAllowed(registrator, name)
      ? "on" : "off: the registrator's Broadcast settings leave this camera out");
    update(nvrSource(registrator, camera));
  });
}

// --- the registrator wizard and the token tab ----------------------------------------------

function wizardPage() {
  wireTabs();
  wireCopyButtons();
  wireTokenForm();
  const steps = $$("#wizard .step");
  let current = 1;
  let registrator = null;
  let checksTimer = null;
  let onlineTimer = null;

  const section = (n) => steps[n - 1];
  // Connect's Next stays disabled until the code is activated (there is nothing to go on with).
  const connectNext = $("[data-next]", section(5));
  const fail = (n, text) => { $("[data-error]", section(n)).textContent = text; };

  function show(n) {
    current = n;
    steps.forEach((step, i) => { step.hidden = i + 1 !== n; });
    $$(".steps li").forEach((li, i) => {
      if (i + 1 === n) li.setAttribute("aria-current", "step");
      else li.removeAttribute("aria-current");
      li.classList.toggle("done", i + 1 < n);
    });
    $("h2", section(n)).focus();
    if (n !== 4) stopChecks();
    enter(n);
  }

  async function enter(n) {
    fail(n, "");
    if (n === 3) {
      const result = await api("GET", `/registrators/${registrator.id}/installation`);
      if (result.ok) $("#one-liner").textContent = result.data.one_liner;
      else fail(3, errorText(result));
    } else if (n === 4 && $("#activation-code").value.trim()) {
      startChecks();
    } else if (n === 5) {
      if (!$("#connect-code").value) $("#connect-code").value = $("#activation-code").value.trim();
      connectNext.disabled = !registrator.device_id;
    } else if (n === 6) {
      await showBroadcast();
    } else if (n === 8) {
      await showSummary();
    }
  }

  async function leave(n) {
    // Each step's Next does its part through the API; false keeps the user on the step.
    if (n === 1) {
      if (!$("#reg-name").value.trim()) { fail(1, "Give the registrator a name."); return false; }
      return true;
    }
    if (n === 2) {
      const body = {
        name: $("#reg-name").value.trim(),
        note: $("#reg-note").value,
        device: $('input[name="reg-device"]:checked').value,
      };
      const result = registrator
        ? await api("PATCH", `/registrators/${registrator.id}`, body)
        : await api("POST", "/registrators", body);
      if (!result.ok) { fail(2, errorText(result)); return false; }
      registrator = result.data;
      return true;
    }
    if (n === 4) {
      if (!$("#check-rows").children.length) {
        fail(4, "Type the activation code the NVR shows and press Show checks.");
        return false;
      }
      return true;
    }
    if (n === 5) {
      if (!registrator.device_id) { fail(5, "Activate the code first."); return false; }
      return true;
    }
    if (n === 6) {
      return save(6, "broadcast", {
        enabled: $("#broadcast-enabled").checked,
        quality: $("#broadcast-quality").value,
        cameras: chosenCameras($("#broadcast-cameras")),
      });
    }
    if (n === 7) {
      return save(7, "archive", {
        enabled: $("#archive-enabled").checked, days: Number($("#archive-days").value),
      });
    }
    return true;
  }

  async function save(n, what, body) {
    const result = await api("PUT", `/registrators/${registrator.id}/${what}`, body);
    if (!result.ok) { fail(n, fieldErrorText(result)); return false; }
    registrator = result.data;
    return true;
  }

  function renderChecks(checks) {
    $("#check-rows").replaceChildren(...checks.map((check) => el("tr", {},
      el("td", { class: "title", text: check.name }),
      el("td", { "data-label": "Result" },
        el("span", { class: `status check-${check.status}`, text: check.status })),
      el("td", { "data-label": "Detail", text: check.detail }),
      el("td", { "data-label": "How to fix", text: check.fix }))));
  }

  async function loadChecks() {
    const code = $("#activation-code").value.trim();
    const result = await api("GET",
      `/registrators/${registrator.id}/activation?code=${encodeURIComponent(code)}`);
    if (!result.ok) { fail(4, errorText(result)); stopChecks(); return; }
    fail(4, "");
    renderChecks(result.data.checks);
    $("#connect-code").value = result.data.code;
  }

  function startChecks() {
    stopChecks();
    loadChecks();
    checksTimer = window.setInterval(loadChecks, 1000);
  }
  function stopChecks() {
    if (checksTimer !== null) window.clearInterval(checksTimer);
    checksTimer = null;
  }

  $("#show-checks").addEventListener("click", startChecks);
  $("#activation-code").addEventListener("keydown", (event) => {
    if (event.key === "Enter") { event.preventDefault(); startChecks(); }
  });

  async function activate() {
    const status = $("#connect-status");
    fail(5, "");
    const result = await api("POST", `/registrators/${registrator.id}/activate`,
      { code: $("#connect-code").value });
    if (!result.ok) { fail(5, errorText(result)); return; }
    registrator = result.data;
    connectNext.disabled = false;
    status.textContent = `Activated: NVR ${registrator.device_id} is linked. Status: ${registrator.status}.`;
    if (onlineTimer !== null) window.clearInterval(onlineTimer);
    onlineTimer = window.setInterval(async () => {
      const now = await api("GET", `/registrators/${registrator.id}`);
      if (!now.ok) return;
      registrator = now.data;
      status.textContent = `Activated: NVR ${registrator.device_id} is linked. Status: ${registrator.status}.`;
      if (registrator.status === "online") window.clearInterval(onlineTimer);
    }, 1000);
  }
  $("#activate").addEventListener("click", activate);

  // The synced cameras to choose from (a setup continued after a Sync has some), asked
  // afresh: the wizard's copy of the registrator may be older than the Sync.
  async function showBroadcast() {
    const result = await api("GET", `/registrators/${registrator.id}`);
    if (!result.ok) { fail(6, errorText(result)); return; }
    registrator = result.data;
    $("#broadcast-cameras").replaceChildren(broadcastCameras(registrator));
  }

  function liveCameras(s) {
    if (Array.isArray(s.broadcast.cameras)) return s.broadcast.cameras.join(", ") || "none";
    return s.cameras.length ? "all" : "all, once Sync has imported them";
  }

  async function showSummary() {
    const result = await api("GET", `/registrators/${registrator.id}/summary`);
    if (!result.ok) { fail(8, errorText(result)); return; }
    const s = result.data;
    const facts = [
      ["Name", s.name], ["Organization", s.org], ["Device", s.device],
      ["NVR", s.device_id || "not linked"], ["Status", s.status],
      ["Broadcast", s.broadcast.enabled ? `on, ${s.broadcast.quality} quality` : "off"],
      ["Live cameras", liveCameras(s)],
      ["Archive", s.archive.enabled ? `on, ${s.archive.days} day(s)` : "off"],
    ];
    $("#summary").replaceChildren(...facts.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })]));
    $("#waiting-for").replaceChildren(...s.waiting_for.map((w) => el("li", { text: `Waiting for ${w}` })));
  }

  async function resume(id) {
    // A registrator whose setup was left half-way: back to its Installation step.
    const result = await api("GET", `/registrators/${encodeURIComponent(id)}`);
    if (!result.ok) { fail(1, `Cannot continue: ${errorText(result)}`); return; }
    registrator = result.data;
    $("#reg-name").value = registrator.name;
    $("#reg-note").value = registrator.note;
    $(`input[name="reg-device"][value="${registrator.device}"]`).checked = true;
    show(registrator.device_id ? 6 : 3);
  }
  if ($("#wizard").dataset.resume) resume($("#wizard").dataset.resume);

  for (const step of steps) {
    const next = $("[data-next]", step);
    const back = $("[data-back]", step);
    if (next) next.addEventListener("click", async () => {
      if (!busy(next, true)) return;
      try { if (await leave(current)) show(current + 1); } finally { busy(next, false); }
    });
    if (back) back.addEventListener("click", () => show(current - 1));
  }
}

function wireTabs() {
  const tabs = $$('[role="tab"]');
  function select(tab) {
    for (const other of tabs) {
      const selected = other === tab;
      other.setAttribute("aria-selected", String(selected));
      other.tabIndex = selected ? 0 : -1;
      document.getElementById(other.getAttribute("aria-controls")).hidden = !selected;
    }
    tab.focus();
  }
  tabs.forEach((tab, i) => {
    tab.addEventListener("click", () => select(tab));
    tab.addEventListener("keydown", (event) => {
      if (event.key === "ArrowRight") select(tabs[(i + 1) % tabs.length]);
      if (event.key === "ArrowLeft") select(tabs[(i - 1 + tabs.length) % tabs.length]);
    });
  });
}

function wireTokenForm() {
  let timer = null;
  $("#token-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    $("#token-error").textContent = "";
    const result = await api("POST", "/registrator-tokens",
      { title: $("#token-title").value, note: $("#token-note").value });
    if (!result.ok) { $("#token-error").textContent = errorText(result); return; }
    $("#token-value").value = result.data.token;
    $("#token-result").hidden = false;
    $("#token-value").focus();
    $("#token-value").select();
    const ends = Date.now() + (result.data.expires_at - result.data.created) * 1000;
    const tick = () => {
      const left = Math.max(0, Math.round((ends - Date.now()) / 1000));
      const h = Math.floor(left / 3600);
      const m = String(Math.floor((left % 3600) / 60)).padStart(2, "0");
      const s = String(left % 60).padStart(2, "0");
      $("#token-countdown").textContent = left ? `${h}:${m}:${s}` : "expired";
    };
    if (timer !== null) window.clearInterval(timer);
    tick();
    timer = window.setInterval(tick, 1000);
  });
}

// --- sessions ------------------------------------------------------------------------------

function sessionsPage() {
  document.addEventListener("click", async (event) => {
    const button = event.target.closest("[data-end-session]");
    if (!button) return;
    const result = await api("DELETE", `/sessions/${encodeURIComponent(button.dataset.endSession)}`);
    if (!result.ok) { $("#sessions-status").textContent = errorText(result); return; }
    if (button.dataset.current === "yes") { window.location.assign("/login"); return; }
    button.closest("tr").remove();
    $("#sessions-status").textContent = "Session ended.";
  });
}

const PAGES = {
  login: loginPage,
  cameras: camerasPage,
  camera: cameraPage,
  registrators: registratorsPage,
  registrator: registratorPage,
  "nvr-camera": nvrCameraPage,
  wizard: wizardPage,
  sessions: sessionsPage,
};

// The header's menu on a phone (on a wide screen the button is hidden, the menu shown).
function wireMenu() {
  const toggle = $(".menu-toggle");
  if (!toggle) return;
  const setOpen = (open) => toggle.setAttribute("aria-expanded", String(open));
  toggle.addEventListener("click", () => setOpen(toggle.getAttribute("aria-expanded") !== "true"));
  toggle.closest("header").addEventListener("keydown", (event) => {
    if (event.key === "Escape" && toggle.getAttribute("aria-expanded") === "true") {
      setOpen(false);
      toggle.focus();
    }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  wireMenu();
  const page = PAGES[document.body.dataset.page];
  if (page) page();
});
