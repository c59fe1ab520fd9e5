"""BN scale: the magnitude of each channel's BatchNorm scale factor |gamma| (Liu et al., ICCV 2017, "Learning
Efficient Convolutional Networks through Network Slimming"). A channel whose gamma is near zero contributes little
after normalisation. Summed over the group's norms (a residual group has one per producer). Groups without a
BatchNorm cannot be scored this way: the criterion says so and names the layer.
"""

from __future__ import annotations

from torch import Tensor, nn

from prunelab.errors import PrunelabError


def bn_scale(model: nn.Module, group) -> Tensor:
    norms = [bn for bn in group.norms() if getattr(bn, "weight", None) is not None]
    if not norms:
        raise PrunelabError(
            "criterion",
            f"{group.key} has no BatchNorm with a scale to rank by",
            "use a model with BatchNorm after each prunable layer (e.g. model=cnn_small_bn), or another criterion",
        )
    return sum(bn.weight.detach().abs() for bn in norms)
