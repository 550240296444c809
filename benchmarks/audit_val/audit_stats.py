"""Independent re-computation of results/ablation_val.md from the VALIDATION cells only.

Reads results/ablation_val/cells/*.json and results/ablation_val/originals/*.json (never results/ablation/).
Uses numpy/scipy only; does not import robustprune or benchmarks.
"""

from __future__ import annotations

import glob
import json
import os
import re
import sys
from collections import defaultdict

import numpy as np
from scipy import stats

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository
VAL = os.path.join(ROOT, "results", "ablation_val")
MD = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "results", "ablation_val.md")
assert "/ablation_val" in VAL
SEARCHY = {"search", "search_random", "progressive_uniform", "oneshot_search"}
RIVALS = ["progressive_uniform", "oneshot_search", "search_random"]
METRICS = ["clean", "pgd", "apgd"]


def bits(s: str) -> np.ndarray:
    return np.frombuffer(s.encode(), dtype=np.uint8) - ord("0")


cells = []
for p in sorted(glob.glob(os.path.join(VAL, "cells", "*.json"))):
    assert "/results/ablation_val/cells/" in p
    d = json.load(open(p))
    d["_file"] = os.path.basename(p)
    cells.append(d)
print("cells", len(cells))

# ---------- data checks ----------
problems = []
groups: dict = defaultdict(lambda: defaultdict(dict))
for c in cells:
    key = (c["model"], c["target"])
    assert c["seed"] not in groups[key][c["method"]], ("duplicate", c["_file"])
    groups[key][c["method"]][c["seed"]] = c
    exp = f"{c['model']}__{c['method']}__{c['target']}__s{c['seed']}.json"
    if exp != c["_file"]:
        problems.append(("file name vs content", c["_file"], exp))
    ps = c["suite_settings"]["paired"]
    if (ps["split"], ps["image_seed"], ps["n_pgd"], ps["n_apgd"], ps["eps"]) != ("val", 0, 5000, 1000, 0.01):
        problems.append(("paired settings", c["_file"], ps))
    if c["suite_settings"]["eval"]["split"] != "val":
        problems.append(("eval split", c["_file"]))
    pi = c["per_image"]
    lens = tuple(len(pi[m]) for m in METRICS)
    if lens != (5000, 5000, 1000):
        problems.append(("lengths", c["_file"], lens))
    if set("".join(pi[m] for m in METRICS)) - {"0", "1"}:
        problems.append(("non-binary", c["_file"]))
    clean_pi = bits(pi["clean"]).mean()
    if abs(clean_pi - c["report"]["clean_accuracy"]) > 1e-9:
        problems.append(("report clean != per-image clean", c["_file"], c["report"]["clean_accuracy"], clean_pi))

originals = {}
for p in sorted(glob.glob(os.path.join(VAL, "originals", "*.json"))):
    d = json.load(open(p))
    originals[d["model"]] = d
    lens = tuple(len(d["per_image"][m]) for m in METRICS)
    if lens != (5000, 5000, 1000):
        problems.append(("orig lengths", p, lens))
    if abs(bits(d["per_image"]["clean"]).mean() - d["report"]["clean_accuracy"]) > 1e-9:
        problems.append(("orig report clean != per-image", p))

# Same images? A proxy: the APGD subset is the first 1000 of the PGD order. An image robust under PGD at eps
# is usually robust under APGD; a quick check that the per-model label ordering agrees is not possible without
# labels, so check that for each model the fraction of images where apgd-correct but pgd-wrong is small.
for (model, target), by in sorted(groups.items()):
    for m, seeds in by.items():
        if sorted(seeds) != [0, 1, 2]:
            problems.append(("seeds", model, target, m, sorted(seeds)))
print("data problems:", len(problems))
for p in problems[:30]:
    print("  ", p)


# ---------- stats (independent) ----------
def mcnemar_exact(a, b):
    n10 = int(((a == 1) & (b == 0)).sum())
    n01 = int(((a == 0) & (b == 1)).sum())
    n = n10 + n01
    if n == 0:
        return 1.0
    k = min(n10, n01)
    return float(min(1.0, 2 * stats.binom.cdf(k, n, 0.5)))


def boot_protocol(diff, n_res=10_000, seed=0, chunk=500):
    """Re-implementation of the documented scheme (images resampled once per replicate, shared by seeds; seeds
    resampled), with the same RNG call sequence, to check exact reproduction."""
    S, N = diff.shape
    rng = np.random.default_rng(seed)
    out = np.empty(n_res)
    for st in range(0, n_res, chunk):
        size = min(chunk, n_res - st)
        counts = rng.multinomial(N, np.full(N, 1.0 / N), size=size).T
        per_seed = diff @ counts / N
        picks = rng.integers(0, S, size=(S, size))
        out[st : st + size] = np.take_along_axis(per_seed, picks, axis=0).mean(axis=0)
    lo, hi = np.percentile(out, [2.5, 97.5])
    return lo, hi


def boot_alt(diff, n_res=10_000, seed=12345):
    """An independent implementation: index-based resampling with a different RNG stream."""
    S, N = diff.shape
    rng = np.random.default_rng(seed)
    out = np.empty(n_res)
    for r in range(0, n_res, 250):
        size = min(250, n_res - r)
        idx = rng.integers(0, N, size=(size, N))
        sd = rng.integers(0, S, size=(size, S))
        # per replicate: mean over resampled seeds of the mean over resampled images
        per_seed = diff[:, idx].mean(axis=2)  # (S, size)
        out[r : r + size] = per_seed[sd, np.arange(size)[:, None]].mean(axis=1)
    return tuple(np.percentile(out, [2.5, 97.5]))


def verdict(lo, hi):
    return "win" if lo > 0 else ("loss" if hi < 0 else "tie")


def fmt(x):
    return f"{x:+.2f}"


def p_fmt(p):
    return "<0.001" if p < 0.001 else f"{p:.3f}"


# ---------- parse the markdown ----------
md = open(MD).read()
sections = re.split(r"^## ", md, flags=re.M)
reported = {}
glance = {}
tally_line = None
for sec in sections:
    head = sec.split("\n", 1)[0]
    m = re.match(r"(\S+) at ([0-9.]+) of (\w+)", head)
    if head.startswith("Verdicts at a glance"):
        for line in sec.splitlines():
            if line.startswith("| **wins"):
                tally_line = [c.strip() for c in line.strip("|").split("|")]
            elif line.startswith("| ") and not line.startswith("| model") and not line.startswith("|---"):
                cols = [c.strip() for c in line.strip().strip("|").split("|")]
                mdl, tgt = cols[0], float(cols[1].split()[0])
                glance[(mdl, tgt)] = cols
    if not m:
        continue
    model, target = m.group(1), float(m.group(2))
    for line in sec.splitlines():
        if line.startswith("| search vs "):
            cols = [c.strip() for c in line.strip().strip("|").split("|")]
            label = cols[0][len("search vs ") :]
            bb = re.match(r"best baseline \((.+)\)", label)
            rival = bb.group(1) if bb else label
            reported[(model, target, "best" if bb else rival)] = (rival, cols[1:4])

cell_re = re.compile(r"([+-]\d+\.\d\d) \[([+-]\d+\.\d\d), ([+-]\d+\.\d\d)\] (win|tie|loss) \(per seed (.*)\)")

# ---------- compare ----------
mismatch = []
exact_ok = 0
n_checked = 0
alt_flips = []
tcheck_changes = []
my_verdicts = {}
rows_out = []
for (model, target), by in sorted(groups.items(), key=lambda kv: (kv[0][0], -kv[0][1])):
    baselines = [m for m in by if m not in SEARCHY]
    by_report = {m: np.mean([by[m][s]["report"]["clean_accuracy"] for s in by[m]]) for m in baselines}
    by_pi = {m: np.mean([bits(by[m][s]["per_image"]["clean"]).mean() for s in by[m]]) for m in baselines}
    best = max(by_report, key=by_report.get)
    best_pi = max(by_pi, key=by_pi.get)
    per_seed_best = [max(baselines, key=lambda m: by[m][s]["report"]["clean_accuracy"]) for s in (0, 1, 2)]
    if best != best_pi:
        mismatch.append(("best baseline by report vs per-image", model, target, best, best_pi))
    if len(set(per_seed_best)) > 1 or per_seed_best[0] != best:
        rows_out.append(f"note: {model} {target}: per-seed best baselines {per_seed_best}, pooled {best}")
    for rkey in RIVALS + ["best"]:
        rival = best if rkey == "best" else rkey
        rep_rival, rep_cells = reported[(model, target, rkey)]
        if rep_rival != rival:
            mismatch.append(("rival name", model, target, rkey, rep_rival, rival))
        verdicts = []
        for mi, metric in enumerate(METRICS):
            A = np.stack([bits(by["search"][s]["per_image"][metric]) for s in (0, 1, 2)]).astype(float)
            B = np.stack([bits(by[rival][s]["per_image"][metric]) for s in (0, 1, 2)]).astype(float)
            diff = A - B
            mean = 100 * diff.mean()
            per_seed = 100 * diff.mean(axis=1)
            ps = [mcnemar_exact(A[s], B[s]) for s in range(3)]
            lo, hi = (100 * x for x in boot_protocol(diff))
            alo, ahi = (100 * x for x in boot_alt(diff)) if metric != "apgd" else (lo, hi)
            v = verdict(lo, hi)
            verdicts.append(v)
            mine = (
                f"{fmt(mean)} [{fmt(lo)}, {fmt(hi)}] {v} (per seed "
                + ", ".join(f"{fmt(d)} p={p_fmt(p)}" for d, p in zip(per_seed, ps, strict=False))
                + ")"
            )
            n_checked += 1
            if mine == rep_cells[mi]:
                exact_ok += 1
            else:
                mismatch.append(("cell", model, target, rkey, metric, "mine: " + mine, "reported: " + rep_cells[mi]))
            if metric != "apgd" and verdict(alo, ahi) != v:
                alt_flips.append(
                    (model, target, rkey, metric, f"[{lo:+.3f},{hi:+.3f}]", f"alt [{alo:+.3f},{ahi:+.3f}]")
                )
            # seed-only t interval (for information)
            sm, sh = per_seed.mean(), stats.t.ppf(0.975, 2) * per_seed.std(ddof=1) / np.sqrt(3)
            if metric != "apgd" and verdict(sm - sh, sm + sh) != v:
                tcheck_changes.append((model, target, rkey, metric, v, verdict(sm - sh, sm + sh)))
        my_verdicts[(model, target, rkey)] = verdicts[:2]
        # glance
        g = glance[(model, target)]
        col = {"progressive_uniform": 3, "oneshot_search": 4, "search_random": 5, "best": 6}[rkey]
        letters = " / ".join({"win": "W", "tie": "T", "loss": "L"}[v] for v in verdicts[:2])
        if g[col] != letters:
            mismatch.append(("glance", model, target, rkey, g[col], letters))
        if g[2] != "3":
            mismatch.append(("glance seeds", model, target, g[2]))

# per-method rows: mean +- t half-width of clean/PGD/APGD, clean lost
row_mis = 0
row_n = 0
for (model, target), by in groups.items():
    sec = [x for x in sections if x.startswith(f"{model} at {target:g} of")][0]
    orig = bits(originals[model]["per_image"]["clean"]).mean()
    for meth, seeds in by.items():
        line = [x for x in sec.splitlines() if x.startswith(f"| {meth} |")][0]
        cols = [c.strip() for c in line.strip().strip("|").split("|")]
        exp = []
        for metric in METRICS:
            v = np.array([100 * bits(seeds[s]["per_image"][metric]).mean() for s in sorted(seeds)])
            h = stats.t.ppf(0.975, 2) * v.std(ddof=1) / np.sqrt(3)
            exp.append(f"{v.mean():.2f} ± {h:.2f}")
            if metric == "clean":
                exp.append(f"{100 * (orig - v.mean() / 100):.2f}")
        got = [cols[3], cols[4], cols[5], cols[6]]
        row_n += 1
        if got != exp:
            row_mis += 1
            mismatch.append(("method row", model, target, meth, got, exp))
print("method rows checked", row_n, "mismatched", row_mis)

# image alignment sanity: agreement of search vs rival far above chance on clean
agree_low = []
for (model, target), by in groups.items():
    o = bits(originals[model]["per_image"]["clean"]).astype(bool)
    for meth, seeds in by.items():
        for s, c in seeds.items():
            a = bits(c["per_image"]["clean"]).astype(bool)
            # images the pruned model gets right that the original gets wrong, vs chance
            kappa_num = (a == o).mean() - (a.mean() * o.mean() + (1 - a.mean()) * (1 - o.mean()))
            if kappa_num < 0.02:
                agree_low.append((model, target, meth, s, round(float(kappa_num), 4)))
print("cells whose clean correctness is not aligned with the original's (agreement - chance < 0.02):", agree_low)

# tallies
tal = []
for _i, rkey in enumerate(RIVALS + ["best"]):
    parts = []
    for mi in range(2):
        vs = [my_verdicts[(m, t, rkey)][mi] for (m, t) in groups]
        parts.append(f"{vs.count('win')}-{vs.count('tie')}-{vs.count('loss')}")
    tal.append(" / ".join(parts))
rep_tal = tally_line[3:] if tally_line else None
print("tallies mine:", tal)
print("tallies reported:", rep_tal)
if rep_tal != tal:
    mismatch.append(("tally", rep_tal, tal))

# losses list for README
losses = {}
for _i, rkey in enumerate(RIVALS + ["best"]):
    for mi in range(2):
        losses[(rkey, mi)] = [
            f"{m} {t:g}"
            for (m, t) in sorted(groups, key=lambda k: (k[0], -k[1]))
            if my_verdicts[(m, t, rkey)][mi] == "loss"
        ]
print("losses:", json.dumps({f"{k[0]}/{['clean', 'pgd'][k[1]]}": v for k, v in losses.items()}, indent=0))

print(f"\ncells checked {n_checked}, exact text match {exact_ok}")
print("mismatches:", len(mismatch))
for m in mismatch:
    print("  ", m)
print("\nverdict flips under an independent bootstrap (different RNG):", len(alt_flips))
for f in alt_flips:
    print("  ", f)
print("\nverdicts that a seed-only 95% t-interval would change (clean/PGD):", len(tcheck_changes))
for f in tcheck_changes:
    print("  ", f)
for r in rows_out:
    print(r)
