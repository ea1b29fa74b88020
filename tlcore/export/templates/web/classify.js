// Classify a photo in the browser with a Transfer Lab export, through the contract of every export:
// input "pixels", float32 RGB 0..255 of shape [1, H, W, 3], the photo resized to H x W as training resized
// it; output "probabilities", one per class in the order of labels.txt. Nothing leaves the browser.
//
//   import { loadModel, classify } from "./classify.js";
//   const model = await loadModel();              // model.onnx and labels.txt beside this file
//   const { label, probability, probabilities } = await classify(model, fileOrBlob);
import * as ort from "./ort.wasm.bundle.min.js";

// A static server sends no cross-origin isolation headers, so WebAssembly threads are not available: one thread,
// in this page (no worker to fetch).
ort.env.wasm.numThreads = 1;
ort.env.wasm.proxy = false;

/** The model and its labels, from the folder this file is in. */
export async function loadModel(base = new URL(".", import.meta.url)) {
  const labelsResponse = await fetch(new URL("labels.txt", base));
  if (!labelsResponse.ok) throw new Error(`labels.txt: ${labelsResponse.status} ${labelsResponse.statusText}`);
  const labels = (await labelsResponse.text()).split("\n").map((line) => line.trim()).filter(Boolean);
  const session = await ort.InferenceSession.create(new URL("model.onnx", base).href, { executionProviders: ["wasm"] });
  const [, height, width] = session.inputMetadata[0].shape; // [batch, H, W, 3]
  return { session, labels, width, height, input: session.inputNames[0], output: session.outputNames[0] };
}

/** Probabilities for a photo (a File or Blob: JPEG, PNG, WebP...) or a canvas, video or image element. */
export async function classify(model, source) {
  const rgba = source instanceof Blob ? await decodePhoto(source, model) : drawnPixels(source);
  return run(model, resizeBilinear(rgba, model.width, model.height));
}

/** The model's answer for RGBA pixels already at its size: `{label, probability, probabilities}`. */
export async function run(model, rgba) {
  const pixels = new Float32Array(model.width * model.height * 3);
  for (let i = 0, j = 0; j < pixels.length; i += 4, j += 3) {
    pixels[j] = rgba.data[i]; // RGB 0..255, as is: the normalisation is inside the model
    pixels[j + 1] = rgba.data[i + 1];
    pixels[j + 2] = rgba.data[i + 2];
  }
  const tensor = new ort.Tensor("float32", pixels, [1, model.height, model.width, 3]);
  const result = await model.session.run({ [model.input]: tensor });
  const probabilities = Array.from(result[model.output].data);
  let best = 0;
  for (let k = 1; k < probabilities.length; k++) if (probabilities[k] > probabilities[best]) best = k;
  return { label: model.labels[best], probability: probabilities[best], probabilities };
}

/** A photo's pixels as training read them: EXIF orientation applied, transparency over white, and a large JPEG
 * first reduced (as Pillow's draft mode decodes it at 1/2, 1/4 or 1/8 scale, still at least twice the size). */
export async function decodePhoto(blob, model) {
  const bitmap = await createImageBitmap(blob, {
    imageOrientation: "from-image", premultiplyAlpha: "none", colorSpaceConversion: "none",
  });
  let rgba = drawnPixels(bitmap);
  bitmap.close();
  const head = new Uint8Array(await blob.slice(0, 2).arrayBuffer());
  if (head[0] === 0xff && head[1] === 0xd8) { // JPEG
    const side = 2 * Math.max(model.width, model.height);
    const fits = Math.min(Math.floor(rgba.width / side), Math.floor(rgba.height / side));
    const scale = [8, 4, 2, 1].find((s) => fits >= s) || 1;
    if (scale > 1) rgba = reduce(rgba, scale);
  }
  return rgba;
}

/** RGBA pixels of an image, bitmap, video frame or canvas, drawn over white at its own size. */
export function drawnPixels(source) {
  const width = source.videoWidth || source.naturalWidth || source.width;
  const height = source.videoHeight || source.naturalHeight || source.height;
  const canvas = document.createElement("canvas");
  canvas.width = width;
  canvas.height = height;
  const context = canvas.getContext("2d", { willReadFrequently: true });
  context.fillStyle = "#ffffff";
  context.fillRect(0, 0, width, height);
  context.drawImage(source, 0, 0, width, height);
  return context.getImageData(0, 0, width, height);
}

/** Each `scale` x `scale` block averaged into one pixel (the edge blocks being smaller): a JPEG decoded at a
 * reduced scale, near enough (a decoder's own reduction differs by a few levels). */
function reduce(rgba, scale) {
  const width = Math.ceil(rgba.width / scale), height = Math.ceil(rgba.height / scale);
  const out = new ImageData(width, height);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const sums = [0, 0, 0];
      let n = 0;
      for (let yy = y * scale; yy < Math.min((y + 1) * scale, rgba.height); yy++) {
        for (let xx = x * scale; xx < Math.min((x + 1) * scale, rgba.width); xx++) {
          const i = (yy * rgba.width + xx) * 4;
          sums[0] += rgba.data[i]; sums[1] += rgba.data[i + 1]; sums[2] += rgba.data[i + 2];
          n++;
        }
      }
      const o = (y * width + x) * 4;
      out.data[o] = Math.round(sums[0] / n); out.data[o + 1] = Math.round(sums[1] / n);
      out.data[o + 2] = Math.round(sums[2] / n); out.data[o + 3] = 255;
    }
  }
  return out;
}

// Pillow's BILINEAR resize of 8-bit images, which training uses: a triangle filter widened by the reduction
// factor (so that every source pixel counts when shrinking), its weights in fixed point with 22 fraction bits,
// one pass along the rows and one along the columns, each rounded to 8 bits. Same pixels, to the level, as the
// Pillow that requirements.txt pins (13), which takes the columns first when the height loses more than twice
// as many pixels as the width.
const BITS = 22;

function weights(inSize, outSize) {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = filterScale; // the triangle's support, 1, widened
  const step = 1 / filterScale;
  const spans = [];
  for (let o = 0; o < outSize; o++) {
    const center = (o + 0.5) * scale;
    const first = Math.max(Math.trunc(center - support + 0.5), 0);
    const last = Math.min(Math.trunc(center + support + 0.5), inSize);
    const raw = [];
    let total = 0;
    for (let i = first; i < last; i++) {
      const w = Math.max(0, 1 - Math.abs((i - center + 0.5) * step));
      raw.push(w);
      total += w;
    }
    const fixed = raw.map((w) => Math.trunc(0.5 + (total ? w / total : w) * (1 << BITS)));
    spans.push({ first, fixed });
  }
  return spans;
}

function pass(src, width, height, outWidth, outHeight, horizontal) {
  const spans = weights(horizontal ? width : height, horizontal ? outWidth : outHeight);
  const out = new Uint8ClampedArray(outWidth * outHeight * 4);
  for (let y = 0; y < outHeight; y++) {
    for (let x = 0; x < outWidth; x++) {
      const { first, fixed } = spans[horizontal ? x : y];
      const o = (y * outWidth + x) * 4;
      for (let c = 0; c < 3; c++) {
        let sum = 1 << (BITS - 1); // rounds the result to the nearest level
        for (let k = 0; k < fixed.length; k++) {
          const i = horizontal ? (y * width + first + k) * 4 : ((first + k) * width + x) * 4;
          sum += src[i + c] * fixed[k];
        }
        out[o + c] = Math.min(255, Math.max(0, sum >> BITS));
      }
      out[o + 3] = 255;
    }
  }
  return out;
}

/** RGBA pixels resized to `width` x `height` exactly as Pillow's `Image.resize(size, Image.BILINEAR)`. */
export function resizeBilinear(rgba, width, height) {
  let data = rgba.data, w = rgba.width, h = rgba.height;
  const columnsFirst = h > height && h - height > 2 * (w - width);
  for (const rows of columnsFirst ? [false, true] : [true, false]) {
    if (rows && w !== width) { data = pass(data, w, h, width, h, true); w = width; }
    if (!rows && h !== height) { data = pass(data, w, h, w, height, false); h = height; }
  }
  return { data, width, height };
}
