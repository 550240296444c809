"""Type-I error of the protocol's verdict (percentile bootstrap over 3 seeds and 5,000 shared images) when the two
methods are equal on average but differ from seed to seed (a null at the level the claim is about: the method, not
one seed's model). numpy only; the bootstrap is a re-implementation of the documented scheme."""

import sys

import numpy as np

S, N = 3, 5000
REPS = int(sys.argv[1]) if len(sys.argv) > 1 else 300
NRES = 2000
rng = np.random.default_rng(7)


def boot(diff, seed):
    r = np.random.default_rng(seed)
    counts = r.multinomial(N, np.full(N, 1.0 / N), size=NRES).T
    per_seed = diff @ counts / N
    picks = r.integers(0, S, size=(S, NRES))
    samples = np.take_along_axis(per_seed, picks, axis=0).mean(axis=0)
    return np.percentile(samples, [2.5, 97.5])


for tau in (0.0, 0.5, 1.0, 2.0, 4.0):  # between-seed sd of the true difference, accuracy points
    rejections = 0
    for rep in range(REPS):
        delta = rng.normal(0, tau / 100, size=S)  # each seed's true A-B difference; mean over seeds is 0
        disc = 0.10  # discordant fraction per seed
        # per image: +1 with prob disc/2 + delta/2, -1 with prob disc/2 - delta/2, else 0
        diff = np.zeros((S, N))
        for s in range(S):
            u = rng.random(N)
            p_plus = disc / 2 + delta[s] / 2
            p_minus = disc / 2 - delta[s] / 2
            diff[s][u < p_plus] = 1
            diff[s][(u >= p_plus) & (u < p_plus + p_minus)] = -1
        lo, hi = boot(diff, rep)
        rejections += (lo > 0) or (hi < 0)
    print(f"between-seed sd {tau:.1f} points: verdict not 'tie' in {rejections}/{REPS} = {rejections / REPS:.1%}")
