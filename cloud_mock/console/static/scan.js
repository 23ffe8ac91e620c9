// "Scan label" on Add camera: the phone's camera (getUserMedia), the label's QR code
// decoded in the browser by zxing-wasm (vendored by scripts/setup.sh, served by the mock),
// and the form filled in for the person to check before pressing Add.
// The label's payload: CAMAGENT:ID:<id>;PW:<password>;; with WIFI-style escaping
// (a backslash before \ ; , : "), as agent/qr/payloads.py reads and writes it.
"use strict";

const SCAN_EVERY_MS = 150;
const SCAN_MAX_WIDTH = 960;

// The fields of `K:v;K:v;;` (keys upper-cased), escapes undone; null if malformed.
function splitFields(body) {
  const fields = new Map();
  let name = null;
  let value = "";
  for (let i = 0; i < body.length; i++) {
    const ch = body[i];
    if (ch === "\\") {
      if (i + 1 >= body.length) return null;
      value += body[++i];
    } else if (name === null && ch === ":") {
      name = value.trim().toUpperCase();
      value = "";
    } else if (ch === ";") {
      if (name !== null && !fields.has(name)) fields.set(name, value);
      else if (name === null && value.trim()) return null;
      name = null;
      value = "";
    } else {
      value += ch;
    }
  }
  if (name !== null && !fields.has(name)) fields.set(name, value);
  return fields;
}

// {id, password} of a camagent camera label, or null for any other text.
function parseLabel(text) {
  if (!/^CAMAGENT:/i.test(text)) return null;
  const fields = splitFields(text.slice("CAMAGENT:".length));
  if (!fields || !fields.get("ID") || !fields.has("PW")) return null;
  return { id: fields.get("ID").trim(), password: fields.get("PW") };
}

// Why the camera cannot be used, in words a person can act on.
function cameraProblem(error) {
  switch (error && error.name) {
    case "NotAllowedError":
    case "SecurityError":
      return "The camera was not allowed: allow it for this site in the browser's settings, " +
        "or type the ID and password from the label.";
    case "NotFoundError":
    case "OverconstrainedError":
      return "No camera was found on this device: type the ID and password from the label.";
    case "NotReadableError":
      return "The camera is busy in another app: close it and try again, or type the ID " +
        "and password from the label.";
    default:
      return `The camera could not be started (${error && error.name ? error.name : error}): ` +
        "type the ID and password from the label.";
  }
}

function loadScript(src) {
  return new Promise((resolve, reject) => {
    const script = document.createElement("script");
    script.src = src;
    script.onload = resolve;
    script.onerror = () => reject(new Error(`could not load ${src}`));
    document.head.append(script);
  });
}

let decoderReady = null;
function loadDecoder(box) {
  if (!decoderReady) {
    decoderReady = loadScript(box.dataset.decoder).then(() => {
      // The wasm from this server, not the CDN the library would otherwise ask.
      window.ZXingWASM.prepareZXingModule({
        overrides: { locateFile: (path, prefix) => (path.endsWith(".wasm") ? box.dataset.wasm : prefix + path) },
        fireImmediately: true,
      });
      return window.ZXingWASM;
    });
    decoderReady.catch(() => { decoderReady = null; });
  }
  return decoderReady;
}

function wireScanLabel() {
  const box = document.getElementById("scan");
  if (!box) return;
  const button = document.getElementById("scan-label");
  const status = document.getElementById("scan-status");
  const view = document.getElementById("scan-view");
  const video = document.getElementById("scan-video");
  const canvas = document.createElement("canvas");
  let stream = null;
  let timer = null;
  let seenOther = false;

  function stop() {
    if (timer !== null) window.clearTimeout(timer);
    timer = null;
    if (stream) for (const track of stream.getTracks()) track.stop();
    stream = null;
    video.srcObject = null;
    view.hidden = true;
    button.setAttribute("aria-expanded", "false");
  }

  function fill(label) {
    stop();
    const device = document.getElementById("cam-device");
    device.value = label.id;
    document.getElementById("cam-password").value = label.password;
    status.textContent = `Label read: camera ${label.id}. Check the ID and password, then press Add.`;
    device.focus();
  }

  async function scanOnce(zxing) {
    if (!stream) return;
    if (video.readyState >= 2 && video.videoWidth > 0) {
      const scale = Math.min(1, SCAN_MAX_WIDTH / video.videoWidth);
      canvas.width = Math.round(video.videoWidth * scale);
      canvas.height = Math.round(video.videoHeight * scale);
      const context = canvas.getContext("2d", { willReadFrequently: true });
      context.drawImage(video, 0, 0, canvas.width, canvas.height);
      const image = context.getImageData(0, 0, canvas.width, canvas.height);
      const results = await zxing.readBarcodes(image,
        { formats: ["QRCode"], tryHarder: true, maxNumberOfSymbols: 4 });
      for (const result of results) {
        const label = result.isValid ? parseLabel(result.text) : null;
        if (label) { fill(label); return; }
        if (result.isValid && !seenOther) {
          seenOther = true;
          status.textContent = "That QR code is not a camagent camera label: point at the " +
            "code on the camera's label.";
        }
      }
    }
    if (stream) timer = window.setTimeout(() => scanOnce(zxing), SCAN_EVERY_MS);
  }

  async function start() {
    if (stream) return;
    if (box.dataset.scanner !== "yes") {
      status.textContent = "The label scanner is not installed on this server " +
        "(scripts/setup.sh fetches it): type the ID and password from the label.";
      return;
    }
    if (!window.isSecureContext || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      status.textContent = "This browser cannot use a camera on this page (it needs HTTPS and " +
        "camera support): type the ID and password from the label.";
      return;
    }
    status.textContent = "Starting the camera…";
    let zxing;
    try {
      [zxing, stream] = await Promise.all([
        loadDecoder(box),
        navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" }, audio: false }),
      ]);
    } catch (error) {
      stop();
      status.textContent = error instanceof Error && error.message.startsWith("could not load")
        ? "The label scanner could not be loaded: type the ID and password from the label."
        : cameraProblem(error);
      return;
    }
    seenOther = false;
    video.srcObject = stream;
    view.hidden = false;
    button.setAttribute("aria-expanded", "true");
    await video.play().catch(() => {});
    status.textContent = "Hold the label's QR code in the frame.";
    scanOnce(zxing);
  }

  button.setAttribute("aria-expanded", "false");
  button.addEventListener("click", start);
  document.getElementById("scan-stop").addEventListener("click", () => {
    stop();
    status.textContent = "Scanning stopped.";
    button.focus();
  });
  // However the form closes (Cancel, Escape, the Add camera button, a camera added), the
  // camera is let go and the old message goes.
  const section = document.getElementById("add-camera");
  new MutationObserver(() => {
    if (!section.hidden) return;
    stop();
    status.textContent = "";
  }).observe(section, { attributes: true, attributeFilter: ["hidden"] });
  window.addEventListener("pagehide", stop);
}

document.addEventListener("DOMContentLoaded", wireScanLabel);
