#!/usr/bin/env node
// ref_face.js - the reference that mer's face models (src/models/face_detect.c, face_expr.c) are checked
// against: face-api 1.7.15's own runtime, i.e. its node build (dist/face-api.node-wasm.js) on
// @tensorflow/tfjs 4.22.0 with the pure-JavaScript CPU backend (tfjs-backend-cpu; no native binary, no
// WASM: the backend is forced to 'cpu'), all installed by scripts/deps.d/face.sh under models/npm/face/.
//
// Pixels: every image is decoded by the ffmpeg command-line tool to packed RGB24 with the swscale flags
// mer's frame reader uses (bilinear), so that the reference and mer see the same bytes (tests/test_video.c
// checks mer's decoder against the same ffmpeg command). The pixels become an int32 [h, w, 3] tensor, the
// canvas-free input path of face-api.
//
// Modes:
//   node scripts/ref_face.js fixture OUT.json IMG...   detectAllFaces(TinyFaceDetectorOptions) +
//       withFaceExpressions() on each image at inputSize 416 (and the detector alone at 320 and 608),
//       written as JSON: per image its size and, per face, the box in pixels, the score, the integer crop
//       face-api hands the expression net, and the 7 expression probabilities.
//   node scripts/ref_face.js bench N IMG...            times N runs of detection + expressions per image
//       (after one warm-up run) and prints one line "ref_face_ms_per_frame <ms>".
//   node scripts/ref_face.js frames W H FILE.rgb       runs detection + expressions on the raw RGB24
//       frames of FILE.rgb (W x H each) and prints one JSON line per frame (used to check `mer run`).
"use strict";
const fs = require("fs");
const path = require("path");
const { execFileSync } = require("child_process");

const ROOT = path.resolve(__dirname, "..");
const NM = path.join(ROOT, "models/npm/face/node_modules");
const MODEL_DIR = path.join(ROOT, "models/face-api");
const tf = require(path.join(NM, "@tensorflow/tfjs"));
const faceapi = require(path.join(NM, "@vladmandic/face-api/dist/face-api.node-wasm.js"));

// Decodes an image file with the ffmpeg CLI to RGB24 bytes.
function decode(file) {
  const probe = execFileSync("ffprobe", ["-v", "error", "-select_streams", "v:0", "-show_entries",
    "stream=width,height", "-of", "csv=p=0", file]).toString().trim().split(",");
  const w = Number(probe[0]), h = Number(probe[1]);
  const rgb = execFileSync("ffmpeg", ["-v", "error", "-i", file, "-frames:v", "1", "-sws_flags", "bilinear",
    "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], { maxBuffer: 1 << 30 });
  if (rgb.length !== w * h * 3) throw new Error(`${file}: ffmpeg gave ${rgb.length} bytes for ${w}x${h}`);
  return { w, h, rgb };
}

async function analyse(rgb, w, h, inputSize) {
  const t = tf.tensor3d(new Int32Array(rgb), [h, w, 3], "int32");
  const opts = new faceapi.TinyFaceDetectorOptions({ inputSize, scoreThreshold: 0.5 });
  const res = await faceapi.detectAllFaces(t, opts).withFaceExpressions();
  const faces = res.map((r) => {
    const b = r.detection.box;
    const crop = b.clipAtImageBorders(w, h); // what extractFaceTensors slices (floored)
    return {
      box: [b.x, b.y, b.width, b.height],
      score: r.detection.score,
      crop: [crop.x, crop.y, crop.width, crop.height],
      expressions: faceapi.FACE_EXPRESSION_LABELS.map((k) => r.expressions[k]),
    };
  });
  t.dispose();
  return faces;
}

async function detectOnly(rgb, w, h, inputSize) {
  const t = tf.tensor3d(new Int32Array(rgb), [h, w, 3], "int32");
  const dets = await faceapi.detectAllFaces(t, new faceapi.TinyFaceDetectorOptions({ inputSize, scoreThreshold: 0.5 }));
  t.dispose();
  return dets.map((d) => ({ box: [d.box.x, d.box.y, d.box.width, d.box.height], score: d.score }));
}

async function main() {
  const [mode, ...args] = process.argv.slice(2);
  await tf.setBackend("cpu");
  await tf.ready();
  if (tf.getBackend() !== "cpu") throw new Error(`backend is ${tf.getBackend()}, expected cpu`);
  await faceapi.nets.tinyFaceDetector.loadFromDisk(MODEL_DIR);
  await faceapi.nets.faceExpressionNet.loadFromDisk(MODEL_DIR);

  if (mode === "fixture") {
    const [out, ...imgs] = args;
    const images = [];
    for (const f of imgs) {
      const { w, h, rgb } = decode(f);
      const entry = { file: path.basename(f), width: w, height: h, faces: await analyse(rgb, w, h, 416) };
      entry.detect320 = await detectOnly(rgb, w, h, 320);
      entry.detect608 = await detectOnly(rgb, w, h, 608);
      images.push(entry);
      process.stderr.write(`${f}: ${entry.faces.length} faces\n`);
    }
    const doc = {
      generator: "scripts/ref_face.js",
      runtime: `face-api ${faceapi.version} on tfjs ${tf.version.tfjs}, backend ${tf.getBackend()}`,
      decoder: "ffmpeg -sws_flags bilinear -pix_fmt rgb24",
      labels: faceapi.FACE_EXPRESSION_LABELS,
      input_size: 416, score_threshold: 0.5,
      images,
    };
    fs.writeFileSync(out, JSON.stringify(doc, null, 1) + "\n");
  } else if (mode === "bench") {
    const n = Number(args[0]);
    const frames = args.slice(1).map(decode);
    for (const f of frames) await analyse(f.rgb, f.w, f.h, 416); // warm-up
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) for (const f of frames) await analyse(f.rgb, f.w, f.h, 416);
    const ms = Number(process.hrtime.bigint() - t0) / 1e6 / (n * frames.length);
    console.log(`ref_face_ms_per_frame ${ms.toFixed(3)}`);
  } else if (mode === "frames") {
    const w = Number(args[0]), h = Number(args[1]);
    const buf = fs.readFileSync(args[2]);
    const fsz = w * h * 3;
    for (let off = 0; off + fsz <= buf.length; off += fsz) {
      const faces = await analyse(buf.subarray(off, off + fsz), w, h, 416);
      console.log(JSON.stringify(faces));
    }
  } else {
    console.error("usage: ref_face.js fixture OUT.json IMG... | bench N IMG... | frames W H FILE.rgb");
    process.exit(2);
  }
}

main().catch((e) => { console.error(`ref_face.js: ${e.stack || e}`); process.exit(1); });
