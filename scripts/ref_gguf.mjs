// ref_gguf.mjs - the reference side of tests/test_gguf.c, on the npm package @huggingface/gguf
// (installed by scripts/deps.d/gguf.sh under models/npm/gguf/).
//   node scripts/ref_gguf.mjs read FILE   parses FILE with the package's GGUF reader and prints JSON:
//       {version, tensor_count, kv_count, kv: {key: {type, subType, value}}, tensorDataOffset,
//        tensors: [{name, shape, dtype, offset, abs}]}   (64-bit integers as decimal strings)
//   node scripts/ref_gguf.mjs write FILE  writes a small GGUF v3 whose header and metadata are
//       serialised by the package's serializeGgufMetadata; tensor infos and data are appended here
//       following ggml docs/gguf.md (ne[] innermost first, offsets relative to the aligned data section).
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const pkg = resolve(here, "../models/npm/gguf/node_modules/@huggingface/gguf/dist/index.mjs");
const { gguf, serializeGgufMetadata, GGUFValueType } = await import(pkg);

const big = (_k, v) => (typeof v === "bigint" ? v.toString() : v);

async function read(file) {
  const r = await gguf(resolve(file), { allowLocalFile: true, typedMetadata: true });
  const kv = {};
  for (const [k, e] of Object.entries(r.typedMetadata)) {
    if (k === "version" || k === "tensor_count" || k === "kv_count") continue;
    kv[k] = { type: e.type, subType: e.subType ?? null, value: e.value };
  }
  const out = {
    version: r.metadata.version,
    tensor_count: r.metadata.tensor_count,
    kv_count: r.metadata.kv_count,
    kv,
    tensorDataOffset: r.tensorDataOffset,
    tensors: r.tensorInfos.map((t) => ({
      name: t.name,
      shape: t.shape,
      dtype: t.dtype,
      offset: t.offset,
      abs: r.tensorDataOffset + t.offset,
    })),
  };
  process.stdout.write(JSON.stringify(out, big) + "\n");
}

function u32(v) { const b = Buffer.alloc(4); b.writeUInt32LE(v); return b; }
function u64(v) { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(v)); return b; }
function str(s) { const e = Buffer.from(s, "utf8"); return Buffer.concat([u64(e.length), e]); }
const pad = (n, a) => (a - (n % a)) % a;

function write(file) {
  const T = GGUFValueType;
  // Tensors: [name, ggml type, shape in ggml order (ne[0] first), data]
  const f32 = Buffer.alloc(4 * 6);
  for (let i = 0; i < 6; i++) f32.writeFloatLE(i * 0.5 - 1, 4 * i);
  const i32 = Buffer.alloc(4 * 3);
  [7, -7, 123456].forEach((v, i) => i32.writeInt32LE(v, 4 * i));
  const q8 = Buffer.alloc(34 * 2);
  for (let i = 0; i < q8.length; i++) q8[i] = (i * 37) & 0xff;
  const tensors = [
    ["blk.0.attn_q.weight", 0, [3, 2], f32], // PyTorch shape [2, 3]
    ["counts", 26, [3], i32],
    ["token_embd.weight", 8, [32, 2], q8], // PyTorch shape [2, 32]
  ];
  const meta = {
    version: { value: 3 },
    tensor_count: { value: BigInt(tensors.length) },
    kv_count: { value: 0n },
    "general.architecture": { value: "qwen2", type: T.STRING },
    "general.name": { value: "caf\u00e9 \u4e2d", type: T.STRING },
    "qwen2.block_count": { value: 2, type: T.UINT32 },
    "qwen2.rope.freq_base": { value: 1000000.0, type: T.FLOAT32 },
    "test.u8": { value: 250, type: T.UINT8 },
    "test.i8": { value: -5, type: T.INT8 },
    "test.u16": { value: 65000, type: T.UINT16 },
    "test.i16": { value: -32000, type: T.INT16 },
    "test.i32": { value: -2000000000, type: T.INT32 },
    "test.bool": { value: true, type: T.BOOL },
    "test.u64": { value: 18446744073709551615n, type: T.UINT64 },
    "test.i64": { value: -9007199254740993n, type: T.INT64 },
    "test.f64": { value: 0.1, type: T.FLOAT64 },
    "tokenizer.ggml.tokens": { value: ["a", "", "\u00e9\u00e9", "<|endoftext|>"], type: T.ARRAY, subType: T.STRING },
    "tokenizer.ggml.token_type": { value: [1, 1, 3, 3], type: T.ARRAY, subType: T.INT32 },
    "test.f32s": { value: [1.5, -0.25], type: T.ARRAY, subType: T.FLOAT32 },
    "test.empty": { value: [], type: T.ARRAY, subType: T.INT16 }, // (subType 0 = UINT8 trips the package)
  };
  meta.kv_count.value = BigInt(Object.keys(meta).length - 3);
  // alignment 1: no padding after the metadata, the tensor infos follow it directly
  const head = Buffer.from(serializeGgufMetadata(meta, { alignment: 1 }));
  const ALIGN = 32;
  const infos = [];
  let off = 0;
  for (const [name, type, ne, data] of tensors) {
    infos.push(str(name), u32(ne.length), ...ne.map(u64), u32(type), u64(off));
    off += data.length + pad(data.length, ALIGN);
  }
  let buf = Buffer.concat([head, ...infos]);
  buf = Buffer.concat([buf, Buffer.alloc(pad(buf.length, ALIGN))]);
  for (const [, , , data] of tensors) buf = Buffer.concat([buf, data, Buffer.alloc(pad(data.length, ALIGN))]);
  writeFileSync(file, buf);
}

const [mode, file] = process.argv.slice(2);
if (mode === "read") await read(file);
else if (mode === "write") write(file);
else {
  process.stderr.write("usage: node scripts/ref_gguf.mjs read|write FILE\n");
  process.exit(2);
}
