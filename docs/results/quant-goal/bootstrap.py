"""Paired block bootstrap of the per-token KLD difference between two ppl runs.

Usage: python3 bootstrap.py REFERENCE.tsv CANDIDATE.tsv
(the nll/ppl-nll-*.tsv files `kvslim bench quality --task ppl` writes; 4 windows of 1,023 scored
tokens, the decoded ones being those at index % 1023 >= 768). Prints, for all tokens and for the
decoded ones, the share of resamples where the candidate's mean KLD is lower and the 95% interval
of (candidate - reference).
"""

import random
import sys


def load(path):
    with open(path) as f:
        next(f)
        return [float(line.split("\t")[2]) for line in f if line.strip()]


def boot(idx, ref, cand, block=32, resamples=4000):
    blocks = [idx[i : i + block] for i in range(0, len(idx), block)]
    sums = [sum(cand[i] - ref[i] for i in b) for b in blocks]
    sizes = [len(b) for b in blocks]
    diffs, lower = [], 0
    for _ in range(resamples):
        pick = [random.randrange(len(blocks)) for _ in blocks]
        d = sum(sums[j] for j in pick) / sum(sizes[j] for j in pick)
        diffs.append(d)
        lower += d < 0
    diffs.sort()
    return lower / resamples, diffs[int(0.025 * resamples)], diffs[int(0.975 * resamples)]


random.seed(1)
ref, cand = load(sys.argv[1]), load(sys.argv[2])
every = list(range(len(ref)))
decoded = [i for i in every if i % 1023 >= 768]
for name, idx in (("mean", every), ("decode", decoded)):
    p, lo, hi = boot(idx, ref, cand)
    print(f"{name}: P(lower) {p:.2f}, delta 95% [{lo:.6f}, {hi:.6f}]")
