#!/usr/bin/env python3
"""Writes tests/fixtures/affectgpt/string_to_list.jsonl: inputs and the outputs of the reference's
string_to_list (MERTools MER2025_Track23 toolkit/utils/functions.py, semantics in spec §1.2) followed by
.lower().strip() per item, as the metric applies them. Run: python3 scripts/make_eval_fixtures.py"""
import json, re

def string_to_list(s):  # the reference semantics (spec §1.2), for strings
    if s == '':
        return []
    if s[0] == '[':
        s = s[1:]
    if s and s[-1] == ']':
        s = s[:-1]
    return [x.strip() for x in re.split('[\'\",]', s) if x.strip() not in ['', ',']]

cases = [
    "['happy', 'sad']", "[happy, sad, angry]", "[]", "", "happy", "  Happy ,SAD  ", "[\"worried\", 'tense']",
    "['don't care']", "[don’t care, relaxed]", "['', ',', ' ']", "[[nested]]", "[happy]]", "happy, , ,sad",
    "[ 开心, 难过 ]", "[\u00a0calm\u3000, \u2003proud ]", "[HAPPY, Sad, ANGRY]", "[\u212aind]", "[\u0130stanbul]",
    "[emoji 😀, 😢sad]", "a'b\"c,d", "[self-deprecating, ill-at-ease]", "\t[happy]\n", "[happy\n, sad]",
]
with open('tests/fixtures/affectgpt/string_to_list.jsonl', 'w', encoding='utf-8') as f:
    for c in cases:
        items = string_to_list(c)
        f.write(json.dumps({"in": c, "items": items, "lower": [x.lower().strip() for x in items]},
                           ensure_ascii=False) + "\n")
print(len(cases), "cases")
