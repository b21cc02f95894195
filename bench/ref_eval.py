#!/usr/bin/env python3
"""The Track2 metric as the reference computes it (MERTools MER2025_Track23 my_affectgpt/evaluation/
wheel.py, semantics in spec §1: dict look-ups, string_to_list, func_backward_case3 per label, sets,
mean P/R per wheel and level, F of the means, mean over wheels), written in plain Python over the same
CSV tables, to time it beside mer's C scorer in bench_eval. Prints the score line and the seconds of
the scoring loop (the tables are built first, as the reference does at import).
Usage: ref_eval.py WHEELS_DIR GT.csv PRED.csv"""
import csv, re, sys, time

def string_to_list(s):
    if s == '':
        return []
    if s[0] == '[':
        s = s[1:]
    if s and s[-1] == ']':
        s = s[:-1]
    return [x.strip() for x in re.split('[\'",]', s) if x.strip() not in ['', ',']]

def rows(path):
    with open(path, encoding='utf-8', newline='') as f:
        return list(csv.DictReader(f))

def wheel_maps(d, w):
    m, cur = {}, [None, None, None]
    for r in rows(f"{d}/wheel{w}.csv"):
        for k, c in enumerate(('level1', 'level2', 'level3')):
            if r[c] != '':
                cur[k] = r[c].lower().strip()
        m.setdefault(cur[0], {}).setdefault(cur[1], []).append(cur[2])
    l1, l2 = {}, {}
    for a in m:
        l1[a] = a
        l2[a] = sorted(m[a])[0]
        for b in m[a]:
            l1[b] = a
            l2[b] = b
            for c in m[a][b]:
                l1[c] = a
                l2[c] = b
    return l1, l2

def tables(d):
    raw = {}
    syn = rows(f"{d}/synonym.csv")
    for run in range(1, 9):
        m = {}
        for r in syn:
            w = r[f'word_run{run}'].strip().lower()
            if not w:
                continue
            m.setdefault(w, []).append(w)
            for s in string_to_list(r[f'synonym_run{run}']):
                m.setdefault(s.strip().lower(), []).append(w)
        for k, v in m.items():
            raw[k] = list(set(raw.get(k, []) + v))
    fm = {}
    for r in rows(f"{d}/format.csv"):
        for x in string_to_list(r['format']):
            fm.setdefault(x, []).append(r['name'])
        fm.setdefault(r['name'], []).append(r['name'])
    wm = {}
    for w in range(1, 6):
        wm[w] = dict(zip(('level1', 'level2'), wheel_maps(d, w)))
    return raw, fm, wm

def backward(label, raw, fm, wmap):
    if label not in fm:
        return ""
    for c in sorted(r for f in fm[label] for r in raw.get(f, [])):
        if c in wmap:
            return wmap[c]
    return ""

def score(gt, pred, raw, fm, wm):
    out = {}
    for lv in ('level1', 'level2'):
        fs = []
        for w in range(1, 6):
            P, R = [], []
            for name, g in gt.items():
                G = set(backward(x.lower().strip(), raw, fm, wm[w][lv]) for x in string_to_list(g)) - {""}
                Q = set(backward(x.lower().strip(), raw, fm, wm[w][lv]) for x in string_to_list(pred[name])) - {""}
                if not G:
                    continue
                if not Q:
                    P.append(0); R.append(0)
                else:
                    P.append(len(G & Q) / len(Q)); R.append(len(G & Q) / len(G))
            p, r = sum(P) / len(P), sum(R) / len(R)
            fs.append(2 * p * r / (p + r))
        out[lv] = sum(fs) / 5
    return out

d, gtp, prp = sys.argv[1:4]
raw, fm, wm = tables(d)
gt = {r['name']: ", ".join(string_to_list(r['openset'])) for r in rows(gtp)}
pred = {r['name']: r['openset'] for r in rows(prp)}
t = time.perf_counter()
s = score(gt, pred, raw, fm, wm)
dt = time.perf_counter() - t
print("%.2f& %.2f& %.2f" % (s['level1'] * 100, s['level2'] * 100, (s['level1'] + s['level2']) * 50))
print("seconds %.6f" % dt)
