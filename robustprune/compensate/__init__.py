"""Data-free compensation for removed channels, as tensor *overrides* (the model is never modified).

An override dict maps names from ``model.named_parameters()`` / ``model.named_buffers()``
to full-shape replacement tensors. Evaluate a compensated candidate without copying
the model::

    with masked(space, candidate):
        logits = torch.func.functional_call(space.model, overrides, (x,))

and export it with ``export(space, candidate, model=apply_overrides(space.model, overrides))``.

``merge_overrides``
    Neuron merging (Srinivas & Babu 2015; Kim et al., NeurIPS 2020, conv/BN form):
    a removed channel's outgoing weights are added, scaled, to its most similar kept
    channel's.
``bn_reestimate_overrides``
    BatchNorm running statistics re-estimated on caller-supplied inputs for the
    model as pruned by the candidate.
``bias_overrides``
    Mean-shift (bias) correction for models without BatchNorm: each consumer's bias
    absorbs the mean contribution of the channels it no longer reads, the means
    measured once on caller-supplied inputs (``consumer_input_means``).
"""

from robustprune.compensate.bias import bias_overrides, consumer_input_means
from robustprune.compensate.bn import bn_reestimate_overrides
from robustprune.compensate.merge import merge_overrides
from robustprune.compensate.overrides import apply_overrides, overrides_applied

__all__ = [
    "apply_overrides",
    "bias_overrides",
    "bn_reestimate_overrides",
    "consumer_input_means",
    "merge_overrides",
    "overrides_applied",
]
