// What the camera components (camera_recorder, camera_live) share: Streamlit's component messages (the few that
// streamlit-component-lib sends, written out: no build step, nothing fetched), the texts the page sends in its
// language, and opening the camera, with the one word for what went wrong that the page turns into a sentence.

export function send(type, data) {
  window.parent.postMessage(Object.assign({ isStreamlitMessage: true, type: type }, data || {}), "*");
}

export function fit() {
  send("streamlit:setFrameHeight", { height: document.body.scrollHeight + 4 });
}

/** The page's text `key` (args.texts), its {placeholders} filled from `values`. */
export function text(args, key, values) {
  let s = (args && args.texts && args.texts[key]) || key;
  for (const [k, v] of Object.entries(values || {})) s = s.replace("{" + k + "}", v);
  return s;
}

/** Start the camera in `video`; null, or why not: "insecure" (not localhost or HTTPS), "denied", "none", "other". */
export async function openCamera(video) {
  if (!window.isSecureContext || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) return "insecure";
  try {
    video.srcObject = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: false });
    await video.play();
    return null;
  } catch (err) {
    return err && err.name === "NotAllowedError" ? "denied" : err && err.name === "NotFoundError" ? "none" : "other";
  }
}

/** Say in `box` why the camera did not open, and tell the page (value {"error": kind}). */
export function cameraFailed(box, args, kind) {
  box.textContent = text(args, "error_" + kind);
  send("streamlit:setComponentValue", { value: { error: kind }, dataType: "json" });
  fit();
}

/** Call `render(args, first)` on each of the page's renders; keep the frame's height fitted; say we are ready. */
export function follow(render) {
  let first = true;
  window.addEventListener("message", (event) => {
    if (!event.data || event.data.type !== "streamlit:render") return;
    render(event.data.args, first);
    first = false;
    fit();
  });
  new ResizeObserver(fit).observe(document.body);  // bars or thumbnails that appear change the frame's height
  send("streamlit:componentReady", { apiVersion: 1 });
}
