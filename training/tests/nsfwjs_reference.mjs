// The reference for the teacher's conversion test (training/tests/test_teacher.py): nsfwjs's own
// InceptionV3 run by its own code on TensorFlow.js's pure-JavaScript CPU backend.
//
//   node training/tests/nsfwjs_reference.mjs [--endpoint mixed5 ...] IMAGE...
//
// Each image is decoded by sharp to 8-bit sRGB and handed to nsfwjs as an int32 [H, W, 3] tensor,
// which nsfwjs itself scales to [0, 1] and resizes to 299x299 (bilinear, align corners).
// Prints one JSON object: {"classes": [...], "images": [{"path", "width", "height", "pixels_sha256",
// "probabilities" (in class order, from nsfwjs's classify), "endpoints": {name: per-channel mean}}]}.
import { createHash } from "node:crypto";

import * as tf from "@tensorflow/tfjs";
import * as nsfwjs from "nsfwjs";
import sharp from "sharp";

const args = process.argv.slice(2);
const endpoints = [];
const paths = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === "--endpoint") endpoints.push(args[++i]);
  else paths.push(args[i]);
}
if (paths.length === 0) {
  process.stderr.write("usage: node nsfwjs_reference.mjs [--endpoint LAYER ...] IMAGE...\n");
  process.exit(2);
}

await tf.setBackend("cpu");
// nsfwjs and TensorFlow.js write notices on stdout; stdout must carry the JSON only.
const log = console.log;
console.log = console.info = (...a) => process.stderr.write(a.join(" ") + "\n");
const model = await nsfwjs.load("InceptionV3");
const classes = ["Drawing", "Hentai", "Neutral", "Porn", "Sexy"];

const images = [];
for (const path of paths) {
  const { data, info } = await sharp(path).removeAlpha().toColourspace("srgb").raw().toBuffer({ resolveWithObject: true });
  const pixels = tf.tensor3d(new Int32Array(data), [info.height, info.width, 3], "int32");
  const ranked = await model.classify(pixels, classes.length);
  const probabilities = classes.map((name) => ranked.find((c) => c.className === name).probability);
  const pooled = {};
  for (const endpoint of endpoints) {
    const out = model.infer(pixels, endpoint);
    pooled[endpoint] = Array.from(await out.mean([0, 1, 2]).data());
    out.dispose();
  }
  pixels.dispose();
  images.push({
    path,
    width: info.width,
    height: info.height,
    pixels_sha256: createHash("sha256").update(data).digest("hex"),
    probabilities,
    endpoints: pooled,
  });
}
log(JSON.stringify({ classes, images }));
