"""A head's first layer over only the inputs that are not zero: the suite's batched decisions.

A siamese net's features come out of a ReLU, and most of them are zero: measured on the depth
generalist's tiny_nfc (64x64, 4,860 inputs to its 1,024-unit first layer), 83% of a frame's
features, and 60-64% of the input columns of a batch of 16-32 frame stacks (no row of the batch
uses them). A zero input adds nothing to a product, so the layer is computed over the columns
some row uses: ``inputs[:, used] @ weight.T[used] + bias``. The values are those of the whole
layer up to the order of the float sums (about 1e-6 apart, as another batch size gives), so a
decision can differ only where two actions tie to within float rounding.

The layer's weight is kept transposed (rows gathered in one copy each), once per layer and
again after its weight changes in place (an optimiser step). Where most columns are used the
whole layer is faster, and is what runs.
"""

from __future__ import annotations

import weakref

import torch
from torch import nn

# above this fraction of used columns, gathering them costs more than it saves
DENSE_ABOVE = 0.6

# layer -> (its weight's version, the weight transposed): kept while the layer lives
_transposed: weakref.WeakKeyDictionary[nn.Linear, tuple[int, torch.Tensor]] = (
    weakref.WeakKeyDictionary()
)


def _weight_t(layer: nn.Linear) -> torch.Tensor:
    """``layer.weight.T`` as a contiguous ``(in, out)`` tensor, made again after it changes."""
    version = layer.weight._version
    kept = _transposed.get(layer)
    if kept is None or kept[0] != version:
        kept = (version, layer.weight.detach().t().contiguous())
        _transposed[layer] = kept
    return kept[1]


def linear_over_used_inputs(layer: nn.Linear, inputs: torch.Tensor) -> torch.Tensor:
    """``layer(inputs)`` for ``inputs (B, in)``, computed over the columns not zero in every row."""
    if inputs.device.type != "cpu" or layer.weight.is_inference():
        return layer(inputs)  # (a weight made in inference mode keeps no version to check)
    # a column's largest magnitude: zero where no row uses it (NaN stays: it is used); a
    # fifth of the time of inputs.ne(0).any(0), whose reduction over rows is not vectorised
    used = inputs.abs().amax(0).ne(0).nonzero().squeeze(1)
    if len(used) > DENSE_ABOVE * inputs.shape[1]:
        return layer(inputs)
    weight = _weight_t(layer).index_select(0, used)  # (used, out)
    columns = inputs.index_select(1, used)  # (B, used)
    if layer.bias is None:
        return columns @ weight
    return torch.addmm(layer.bias, columns, weight)


def head_over_used_inputs(head: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """``head(inputs)``, its first layer over the used inputs where it is a Linear."""
    if isinstance(head, nn.Sequential) and len(head) and type(head[0]) is nn.Linear:
        return head[1:](linear_over_used_inputs(head[0], inputs))
    return head(inputs)
