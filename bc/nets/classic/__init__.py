"""The classic deep ImageNet architectures of the original study, as corridor-bc policy nets.

Importing this package registers, for every family, a frame-stack net ``X`` (``--frames``
1, 3 or 5; one backbone shared by the frames) and a recurrent net ``X_lstm``:

==========  ===============  ======  ==========================================
net         architecture     input   notes
==========  ===============  ======  ==========================================
alex        alexnet          224
vgg16       vgg16            224
inception   inception_v3     299     auxiliary classifier left out of the encoder
res18       resnet18         224
dense       densenet121      224
squeeze     squeezenet1_0    224     the study's "squeeze"
squeeze11   squeezenet1_1    224     same accuracy as 1.0 at 2.4x less compute
==========  ===============  ======  ==========================================

The full 1000-class models (``alexnet()`` ... ``inception_v3()``) are exported too, with
parameter names and shapes identical to torchvision's.
"""

from __future__ import annotations

from torch import nn

from bc.nets.classic.alexnet import AlexNet, alexnet
from bc.nets.classic.backbone import (
    ARCHITECTURES,
    Architecture,
    ClassicBackbone,
    PretrainedWeightsError,
    adapt_first_conv_weight,
    get_architecture,
    read_state_dict,
)
from bc.nets.classic.densenet import DenseNet, densenet121
from bc.nets.classic.inception import Inception3, InceptionOutputs, inception_v3
from bc.nets.classic.resnet import ResNet, resnet18
from bc.nets.classic.squeezenet import SqueezeNet, squeezenet1_0, squeezenet1_1
from bc.nets.classic.vgg import VGG, vgg16
from bc.nets.registry import NetSpec, register_net
from bc.nets.temporal import FrameStackPolicy, RecurrentPolicy

__all__ = [
    "ARCHITECTURES",
    "CLASSIC_NETS",
    "AlexNet",
    "Architecture",
    "ClassicBackbone",
    "DenseNet",
    "Inception3",
    "InceptionOutputs",
    "PretrainedWeightsError",
    "ResNet",
    "SqueezeNet",
    "VGG",
    "adapt_first_conv_weight",
    "alexnet",
    "densenet121",
    "get_architecture",
    "inception_v3",
    "read_state_dict",
    "resnet18",
    "squeezenet1_0",
    "squeezenet1_1",
    "vgg16",
]

# Registered net name -> (architecture, slow). A batch-2 training step at the native input
# size takes ~0.1-0.2 s on one CPU core for squeeze, squeeze11 and res18; the slow ones take
# 0.3-1.1 s or (alex, vgg16) hold 0.25-0.55 GB of weights: the trainer's test loop skips them.
CLASSIC_NETS: dict[str, tuple[str, bool]] = {
    "alex": ("alexnet", True),
    "vgg16": ("vgg16", True),
    "inception": ("inception_v3", True),
    "res18": ("resnet18", False),
    "dense": ("densenet121", True),
    "squeeze": ("squeezenet1_0", False),
    "squeeze11": ("squeezenet1_1", False),
}


def _register(name: str, arch: str, slow: bool) -> None:
    size = ARCHITECTURES[arch].input_size

    @register_net(
        name,
        frames=(1, 3, 5),
        slow=slow,
        description=f"{arch} (torchvision layout, {size}px input), frames share it, MLP head",
        resizes=True,
    )
    def build_frame_stack(spec: NetSpec) -> nn.Module:
        encoder = ClassicBackbone(arch, channels=spec.channels, input_size=spec.input_size)
        return FrameStackPolicy(encoder, spec.frames, spec.n_outputs)

    @register_net(
        f"{name}_lstm",
        frames=(1,),
        recurrent=True,
        slow=slow,
        description=f"{arch} (torchvision layout, {size}px input) per frame, then a 2-layer LSTM",
        resizes=True,
    )
    def build_recurrent(spec: NetSpec) -> nn.Module:
        encoder = ClassicBackbone(arch, channels=spec.channels, input_size=spec.input_size)
        return RecurrentPolicy(encoder, spec.n_outputs)


for _name, (_arch, _slow) in CLASSIC_NETS.items():
    _register(_name, _arch, _slow)
