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
//       (after one warm-up run) and prints "ref_face_ms_per_frame <ms>" (wall) and
//       "ref_face_cpu_ms_per_frame <ms>" (user + system CPU time of the process).
//   node scripts/ref_face.js frames W H FILE.rgb       runs detection + expressions on the raw RGB24
//       frames of FILE.rgb (W x H each) and prints one JSON line per frame (used to check `mer run`).
//   node scripts/ref_face.js clip-fixture OUT.json IMG...  the reference for `mer run` on a video made of
//       the images: each image converted to RGB24 and padded (centred, black) to one frame size by the
//       ffmpeg filter CLIP_FILTER below (the test builds its lossless clip with the same filter, stored in
//       OUT.json), then detection + expressions on each padded frame.
//   node scripts/ref_face.js tfjs-fixture DIR          writes a small tfjs weights manifest with two shards
//       (float32, uint8/uint16/float16-quantised float32, uint8-quantised int32 and bool tensors, one of
//       them across the shard boundary) to DIR, and DIR/expected.json: every tensor as tf.io.decodeWeights
//       decodes it, plus for each tensor of face-api's two real models its element count, sum (double) and
//       the values at indices 0, n/2 and n-1 as tfjs decodes them.
"use strict";
const fs = require("fs");
const path = require("path");
const { execFileSync } = require("child_process");

const ROOT = path.resolve(__dirname, "..");
const NM = path.join(ROOT, "models/npm/face/node_modules");
const MODEL_DIR = path.join(ROOT, "models/face-api");
const tf = require(path.join(NM, "@tensorflow/tfjs"));
const faceapi = require(path.join(NM, "@vladmandic/face-api/dist/face-api.node-wasm.js"));

const CLIP_W = 1920, CLIP_H = 1538;
const CLIP_FILTER = `format=rgb24,pad=${CLIP_W}:${CLIP_H}:(ow-iw)/2:(oh-ih)/2:color=black`;

// Decodes an image file with the ffmpeg CLI to RGB24 bytes, optionally through a filter.
function decodeFiltered(file, filter, w, h) {
  const rgb = execFileSync("ffmpeg", ["-v", "error", "-i", file, "-frames:v", "1", "-sws_flags", "bilinear",
    "-vf", filter, "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], { maxBuffer: 1 << 30 });
  if (rgb.length !== w * h * 3) throw new Error(`${file}: ffmpeg gave ${rgb.length} bytes for ${w}x${h}`);
  return { w, h, rgb };
}

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

// A deterministic pseudo-random stream (LCG) for the small manifest's payload.
function lcg(seed) {
  let x = seed >>> 0;
  return () => (x = (Math.imul(x, 1664525) + 1013904223) >>> 0);
}

function tfjsFixture(dir) {
  fs.mkdirSync(dir, { recursive: true });
  const rnd = lcg(7);
  const specs = [];
  const parts = [];
  const f32 = (name, shape) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = ((rnd() % 20001) - 10000) / 997;
    specs.push({ name, shape, dtype: "float32" });
    parts.push(Buffer.from(a.buffer));
  };
  const quant = (name, shape, dtype, qd, min, scale) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const bytes = qd === "uint8" ? 1 : 2;
    const b = Buffer.alloc(n * bytes);
    for (let i = 0; i < n; i++) {
      if (bytes === 1) b[i] = rnd() & 255;
      else if (qd === "uint16") b.writeUInt16LE(rnd() & 65535, 2 * i);
      else b.writeUInt16LE([0x3c00, 0xc000, 0x3555, 0x7bff, 0x0001, 0x8400, 0x0000, rnd() & 0x7bff][i % 8], 2 * i);
    }
    const q = { dtype: qd };
    if (qd !== "float16") { q.min = min; q.scale = scale; }
    specs.push({ name, shape, dtype, quantization: q });
    parts.push(b);
  };
  f32("a/float", [2, 3, 4]);
  quant("b/u8", [5, 7], "float32", "uint8", -1.2069439495311063, 0.009007044399485869);
  quant("c/u16", [3, 11], "float32", "uint16", -3.5, 0.0001220703125);
  quant("d/f16", [16], "float32", "float16");
  quant("e/int_u8", [9], "int32", "uint8", -7.3, 0.37);
  specs.push({ name: "f/bool", shape: [6], dtype: "bool" });
  parts.push(Buffer.from([0, 1, 2, 0, 255, 1]));
  specs.push({ name: "g/int", shape: [4], dtype: "int32" });
  parts.push(Buffer.from(new Int32Array([-5, 0, 7, 2147483647]).buffer));
  f32("h/scalar", []);
  f32("i/empty", [0, 3]);
  const all = Buffer.concat(parts);
  const cut = 97; // inside b/u8: that tensor spans both shards
  fs.writeFileSync(path.join(dir, "group1-shard1of2.bin"), all.subarray(0, cut));
  fs.writeFileSync(path.join(dir, "group1-shard2of2.bin"), all.subarray(cut));
  fs.writeFileSync(path.join(dir, "model-weights_manifest.json"),
    JSON.stringify([{ paths: ["group1-shard1of2.bin", "group1-shard2of2.bin"], weights: specs }], null, 1) + "\n");
  const ab = all.buffer.slice(all.byteOffset, all.byteOffset + all.length);
  const dec = tf.io.decodeWeights(ab, specs);
  const expected = { small: {}, models: {} };
  for (const sp of specs) expected.small[sp.name] = { shape: sp.shape, dtype: dec[sp.name].dtype, values: Array.from(dec[sp.name].dataSync()) };
  for (const m of ["tiny_face_detector_model", "face_expression_model"]) {
    const man = JSON.parse(fs.readFileSync(path.join(MODEL_DIR, `${m}-weights_manifest.json`)));
    const bufs = man[0].paths.map((p) => fs.readFileSync(path.join(MODEL_DIR, p)));
    const b = Buffer.concat(bufs);
    const d = tf.io.decodeWeights(b.buffer.slice(b.byteOffset, b.byteOffset + b.length), man[0].weights);
    const out = {};
    for (const sp of man[0].weights) {
      const v = d[sp.name].dataSync();
      let sum = 0;
      for (const x of v) sum += x;
      out[sp.name] = { n: v.length, sum, at: [v[0], v[v.length >> 1], v[v.length - 1]] };
    }
    expected.models[m] = out;
  }
  fs.writeFileSync(path.join(dir, "expected.json"), JSON.stringify(expected, null, 1) + "\n");
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
    const t0 = process.hrtime.bigint(), c0 = process.cpuUsage();
    for (let i = 0; i < n; i++) for (const f of frames) await analyse(f.rgb, f.w, f.h, 416);
    const ms = Number(process.hrtime.bigint() - t0) / 1e6 / (n * frames.length);
    const c = process.cpuUsage(c0), cpu = (c.user + c.system) / 1e3 / (n * frames.length);
    console.log(`ref_face_ms_per_frame ${ms.toFixed(3)}`);
    console.log(`ref_face_cpu_ms_per_frame ${cpu.toFixed(3)}`);
  } else if (mode === "frames") {
    const w = Number(args[0]), h = Number(args[1]);
    const buf = fs.readFileSync(args[2]);
    const fsz = w * h * 3;
    for (let off = 0; off + fsz <= buf.length; off += fsz) {
      const faces = await analyse(buf.subarray(off, off + fsz), w, h, 416);
      console.log(JSON.stringify(faces));
    }
  } else if (mode === "clip-fixture") {
    const [out, ...imgs] = args;
    const frames = [];
    for (const f of imgs) {
      const { w, h, rgb } = decodeFiltered(f, CLIP_FILTER, CLIP_W, CLIP_H);
      frames.push({ file: path.basename(f), faces: await analyse(rgb, w, h, 416) });
      process.stderr.write(`${f}: ${frames[frames.length - 1].faces.length} faces\n`);
    }
    const doc = {
      generator: "scripts/ref_face.js clip-fixture",
      runtime: `face-api ${faceapi.version} on tfjs ${tf.version.tfjs}, backend ${tf.getBackend()}`,
      labels: faceapi.FACE_EXPRESSION_LABELS,
      width: CLIP_W, height: CLIP_H, filter: CLIP_FILTER,
      frames,
    };
    fs.writeFileSync(out, JSON.stringify(doc, null, 1) + "\n");
  } else if (mode === "tfjs-fixture") {
    tfjsFixture(args[0]);
  } else {
    console.error("usage: ref_face.js fixture OUT.json IMG... | bench N IMG... | frames W H FILE.rgb");
    process.exit(2);
  }
}

main().catch((e) => { console.error(`ref_face.js: ${e.stack || e}`); process.exit(1); });
