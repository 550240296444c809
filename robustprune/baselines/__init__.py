"""One-shot data-free pruning baselines: what the progressive search has to beat.

- ``l1_uniform``: the same fraction of channels removed from every group, lowest
  L1 filter norm first (Li et al. 2017).
- ``taylor_uniform``: the same fractions, channels ranked by the first-order Taylor
  importance on synthetic inputs (``taylor_synthetic``); it separates what the search's
  per-group allocation wins from what the criterion alone gives. Needs ``inputs``.
- ``taylor_l1_uniform``: the same fractions, channels ranked by ``taylor_l1`` (the rank sum
  of Taylor on synthetic inputs and L1), the search's usual ranking: the strongest one-shot
  rival of its allocation. Needs ``inputs`` too.
- ``random_uniform``: the same fractions, channels chosen at random (seeded).
- ``global_magnitude``: one ranking over all groups of the L1 importance normalised
  by its group mean (torch-pruning's global pruning); the least important channels
  anywhere go first.
- ``paoding``: the Paoding method (``baselines.paoding``): progressive pair merging of
  dense neurons chosen by saliency, interval-arithmetic impact and simulated annealing.

The uniform and global candidates themselves are ``robustprune.select``'s (the search uses
them too). None of the baselines sees real data or re-estimates BN statistics; each lands at
or just below its target (fraction of the original MACs or params to keep).
"""

from robustprune.baselines.oneshot import INPUT_CRITERIA, METHODS, PruneResult, baseline

__all__ = ["INPUT_CRITERIA", "METHODS", "PruneResult", "baseline"]
