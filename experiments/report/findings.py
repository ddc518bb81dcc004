"""The findings of the original notes, each tied to its sweep specs (``experiments/specs/``).

A finding names the specs whose trials measure it, the configurations it shows (``Group``: the
trials of one spec whose swept values match ``where``) and the notes' claims as comparisons of
two configurations (``Claim``: "A > B", A better than B, or "A ~ B", no clear difference).
``python -m experiments.report`` turns each into a section of docs/results.md with a verdict
(``experiments.report.stats``). Each spec's header comment quotes the same claim.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from experiments.report.stats import RELATIONS

NOTES = "003_344b75b423e47036.txt"  # the corridor study's experiment notes
LAB = "004_4d31d62ca28854d4.txt"  # the transfer-learning lab


class _Some:
    """Matches any non-empty swept value (a group's ``where``): "some checkpoint"."""

    def __repr__(self) -> str:
        return "SOME"


SOME = _Some()


@dataclass(frozen=True)
class Group:
    """One configuration of a finding: the trials of ``spec`` whose values match ``where``.

    ``exact`` asks for the swept values to be ``where`` and nothing more: a study of
    ``[[cases]]`` sets only a case's own flags, so ``{"train.net": "tiny_lstm"}`` alone would
    also match the cases that add ``train.bptt``. ``offline = False`` marks a group whose
    offline metrics are on another task's data (they are shown as n/a); ``series`` and ``x``
    place it on a line plot.
    """

    label: str
    spec: str
    where: Mapping[str, Any] = field(default_factory=dict)
    offline: bool = True
    series: str = ""
    x: float | None = None
    exact: bool = False

    def matches(self, values: Mapping[str, Any]) -> bool:
        """Whether a trial's swept ``values`` belong to this group."""
        if self.exact and set(values) != set(self.where):
            return False
        for key, wanted in self.where.items():
            if key not in values:
                return False
            if wanted is SOME:
                if not values[key]:
                    return False
            elif values[key] != wanted:
                return False
        return True


@dataclass(frozen=True)
class Claim:
    """A claim of the notes as a comparison: group ``a`` RELATION group ``b``."""

    text: str
    a: str
    relation: str  # ">" (a better than b), "~" (no clear difference), "spread>" (a less stable)
    b: str

    def __post_init__(self) -> None:
        if self.relation not in RELATIONS:
            raise ValueError(f"claim {self.text!r}: relation must be one of {RELATIONS}")


@dataclass(frozen=True)
class Finding:
    """A finding of the notes, its specs, configurations and claims."""

    name: str
    title: str
    source: str  # the notes' file(s) and section
    quote: str  # the notes' own words
    specs: tuple[str, ...]
    groups: tuple[Group, ...]
    claims: tuple[Claim, ...]
    measured: str = ""  # how this project measures it, one or two sentences
    x_label: str = ""  # set: plot the groups as lines over x (series), else one point each
    x_log: bool = False

    def group(self, label: str) -> Group:
        """The group called ``label``."""
        for group in self.groups:
            if group.label == label:
                return group
        raise KeyError(f"finding {self.name} has no group {label!r}")


ARCHITECTURES = "architectures"  # the finding spec of families on their recipes, one case each


def _family(label: str, **flags: Any) -> Group:
    """The architectures spec's case that sets exactly ``flags`` (``train_net``: train.net)."""
    where = {key.replace("_", ".", 1): value for key, value in flags.items()}
    return Group(label, ARCHITECTURES, where, exact=True)


# the fresh seeds of window and sliding TBPTT that judge the claim of sliding's instability
LSTM_STABILITY = "lstm_stability"
FRESH_WINDOW, FRESH_SLIDING = "window, seeds 6-11", "sliding, seeds 6-11"

# the README's default configuration (tiny_nfc, 3 frames, classifier), as architectures sets it
DEFAULT_FAMILY = {"train_net": "tiny_nfc"}


def _frames_label(frames: int) -> str:
    return f"{frames} frame{'s' * (frames > 1)}"


def _each(spec: str, key: str, *values: str, suffix: str = "") -> tuple[Group, ...]:
    """One group per value of ``key`` swept in ``spec``, labelled with the value and ``suffix``."""
    return tuple(Group(f"{value}{suffix}", spec, {key: value}) for value in values)


LR_GROUPS = tuple(
    Group(
        f"{_frames_label(frames)}, lr {lr:g}",
        "lr_frames",
        {"train.frames": frames, "train.lr": lr},
        series=_frames_label(frames),
        x=lr,
    )
    for frames in (1, 3)
    for lr in (0.1, 0.01, 0.001)
)
DATA_SIZES = (500, 2000, 8000)
DATA_GROUPS = tuple(
    Group(f"{net} {size:,} frames", "data_dependency",
          {"train.net": net, "train.max_frames": size}, series=net, x=size)
    for net in ("tiny", "res18")
    for size in DATA_SIZES
)  # fmt: skip
TRANSFER_TARGET = "transfer_target"
# the notes' claim for discrete and stochastic data alike
CLASSIFIER_BEATS_REGRESSOR = Claim("classifier beats regressor", "classifier", ">", "regressor")

FINDINGS: tuple[Finding, ...] = (
    Finding(
        name="input_space_frames",
        title="Input space: 1, 3 and 5 frames through a shared encoder",
        source=f'{NOTES}, "_NA: Increase input space_"',
        quote="A clear win for the usage of multiple input samples between one and 3 frames in"
        " shared feature extraction part. The improvement from three to five is not so clear.",
        measured="tiny_nfc (siamese: one encoder shared by the frames) with 1, 3 and 5 frames,"
        " each on its own recipe (1 frame: 15 epochs of class-balanced batches).",
        specs=(ARCHITECTURES,),
        groups=(
            _family("1 frame", train_frames=1),
            _family("3 frames", **DEFAULT_FAMILY),
            _family("5 frames", train_frames=5),
        ),
        claims=(
            Claim("3 frames beat 1", "3 frames", ">", "1 frame"),
            Claim(
                "5 frames about the same as 3 (no clear improvement)", "5 frames", "~", "3 frames"
            ),
        ),
    ),
    Finding(
        name="input_space_fusion",
        title="Input space: siamese frame stack against 3D CNN",
        source=f'{NOTES}, "_NA: Increase input space_"',
        quote="2 Options: with or without shared feature extraction network. [...] A clear win"
        " for the usage of multiple input samples between one and 3 frames in shared feature"
        " extraction part.",
        measured="3 frames each: tiny_nfc (shared encoder), tiny_3d"
        " (3D convolutions over time) and tiny_early (frames stacked on the channels, the"
        ' original study\'s "3d" net).',
        specs=(ARCHITECTURES,),
        groups=(
            _family("siamese (tiny_nfc)", **DEFAULT_FAMILY),
            _family("3D CNN (tiny_3d)", train_net="tiny_3d"),
            _family("early fusion (tiny_early)", train_net="tiny_early"),
        ),
        claims=(
            Claim("shared features beat the 3D CNN", "siamese (tiny_nfc)", ">", "3D CNN (tiny_3d)"),
            Claim(
                "shared features beat early fusion",
                "siamese (tiny_nfc)",
                ">",
                "early fusion (tiny_early)",
            ),
        ),
    ),
    Finding(
        name="head_discrete",
        title="Head: classifier against regressor on discrete data",
        source=f'{NOTES}, "_NA: Continuous action space_"',
        quote="The dataset is discrete with controls varying only over 3 options. This prior"
        " knowledge of the task can be exploited in the network by using a classifier network"
        " instead of a regressor. This leads to faster training and better end performance.",
        measured="tiny_nfc, 3 frames, on the discrete expert's data (the default), each head"
        ' with its recipe; accuracy is "predicted bin == label bin" for both heads, the'
        " regressor's bins as it flies them (its own deadband and hysteresis).",
        specs=(ARCHITECTURES,),
        groups=(
            _family("classifier", **DEFAULT_FAMILY),
            _family("regressor", train_head="regressor"),
        ),
        claims=(CLASSIFIER_BEATS_REGRESSOR,),
    ),
    Finding(
        name="head_stochastic",
        title="Head: classifier, regressor and Gaussian on stochastic data",
        source=f'{NOTES}, "_NA: Continuous action space_" and its EXTENSION',
        quote="using a classifier network instead of a regressor [...] leads to faster training"
        " and better end performance. [...] EXTENSION: Create a dataset with the continuous"
        " expert and see how a big dataset and a regressor might lead to a lower training (and"
        " validation?) loss due to no lower bound quantization error.",
        measured="tiny_nfc, 3 frames, on the stochastic expert's data (continuous yaw plus"
        " noise); the Gaussian head is not in the notes: measured, no claim.",
        specs=("head_stochastic",),
        groups=_each("head_stochastic", "train.head", "classifier", "regressor", "gaussian"),
        claims=(CLASSIFIER_BEATS_REGRESSOR,),
    ),
    Finding(
        name="lstm_training",
        title="LSTM training: full, window-wise and sliding TBPTT, and accumulation",
        source=f'{NOTES}, "_NA: LSTM training methods_" and its EXTENSION',
        quote="Or the order can be shuffled leading to better stabilization wich is called"
        " windowwise-truncated backpropagation through time (WW-TBPTT). [...] The sliding-window"
        " is very unstable due to multiple gradient steps are based on consecutive frames that"
        " are highly correlated. Rather than taking a gradient step at each time window, it"
        " would be better to accumulate the gradients first over the full sequence before"
        " changing the parameters.",
        measured="tiny_lstm, windows of 20 steps, each mode on its own recipe (docs/nets.md);"
        " the validation curves of the modes on the README's full data are in"
        ' "Every family on its own defaults". The claim of instability is judged on 6 fresh'
        " training seeds of window and sliding (lstm_stability.toml), by their spread.",
        specs=(ARCHITECTURES, LSTM_STABILITY),
        groups=(
            _family("full", train_net="tiny_lstm", train_bptt="full"),
            _family("window", train_net="tiny_lstm"),
            _family("sliding", train_net="tiny_lstm", train_bptt="sliding"),
            _family(
                "sliding + accumulate",
                train_net="tiny_lstm",
                train_bptt="sliding",
                train_accumulate=True,
            ),
            Group(FRESH_WINDOW, LSTM_STABILITY, {"train.net": "tiny_lstm"}, exact=True),
            Group(
                FRESH_SLIDING,
                LSTM_STABILITY,
                {"train.net": "tiny_lstm", "train.bptt": "sliding"},
                exact=True,
            ),
        ),
        claims=(
            Claim("shuffled windows beat sliding windows", "window", ">", "sliding"),
            Claim(
                "accumulating the gradients fixes sliding windows",
                "sliding + accumulate",
                ">",
                "sliding",
            ),
            Claim("sliding windows are unstable", FRESH_SLIDING, "spread>", FRESH_WINDOW),
        ),
    ),
    Finding(
        name="input_norm",
        title="Input normalisation and balanced batches",
        source=f'{NOTES}, "_NA: Influence of data normalization on Alexnet_"',
        quote="At the input side is not much difference. Shifting the data, as well as scaling"
        " has a slight improvement over the reference. [...] Normalizing the different discrete"
        " actions within a batch at the output has a slight negative impact in this setting.",
        measured="tiny_nfc, 3 frames (the notes used alex), --input-norm none, shift (the"
        " default) and scale; --balance (class-balanced batches) with raw and with shifted"
        " input.",
        specs=("input_norm",),
        groups=(
            *(
                Group(norm, "input_norm", {"train.input_norm": norm}, exact=True)
                for norm in ("none", "shift", "scale")
            ),
            *(
                Group(
                    f"{norm} + balance",
                    "input_norm",
                    {"train.input_norm": norm, "train.balance": True},
                    exact=True,
                )
                for norm in ("none", "shift")
            ),  # fmt: skip
        ),
        claims=(
            Claim("shifted about the same as scaled input", "shift", "~", "scale"),
            Claim("shifted input slightly better than raw", "shift", ">", "none"),
            Claim("scaled input slightly better than raw", "scale", ">", "none"),
            Claim(
                "balanced batches slightly worse (raw input, the notes' setting)",
                "none",
                ">",
                "none + balance",
            ),
            Claim(
                "balanced batches slightly worse (shifted input)", "shift", ">", "shift + balance"
            ),
        ),
    ),
    Finding(
        name="data_dependency",
        title="Data dependency: tiny against a classic deep net from scratch",
        source=f'{NOTES}, "_NA: Compare realistic architectures_"',
        quote="The three models above are competing in performance on gradual smaller datasets."
        " Ideally a smaller model is less prune to overfitting and allows faster learning.",
        measured="the single-frame tiny net and res18 (at 64 px) from scratch on the first 500,"
        " 2,000 and 8,000 training frames of one dataset, 1,000 optimiser steps each; the notes"
        " used alex, beyond this CPU's budget (data_dependency.toml says why).",
        specs=("data_dependency",),
        groups=DATA_GROUPS,
        claims=(
            Claim("tiny: more data is better", "tiny 8,000 frames", ">", "tiny 500 frames"),
            Claim("res18: more data is better", "res18 8,000 frames", ">", "res18 500 frames"),
            Claim(
                "the smaller net copes better with little data",
                "tiny 500 frames",
                ">",
                "res18 500 frames",
            ),
        ),
        x_label="training frames (--max-frames)",
        x_log=True,
    ),
    Finding(
        name="transfer",
        title="Transfer from the project's own checkpoint: four schemes",
        source=f'{NOTES}, "_NA: Compare deep architectures_"; {LAB}, the transfer-learning lab',
        quote="As end-to-end training leads to a better accuracy than only retraining the last"
        " decision layers, it is clear that the imagenet features are still suboptimal."
        f' ({NOTES}) / Перенос обучения не показал значительного улучшения. ({LAB}: "transfer'
        ' learning did not show a significant improvement"; its source model used as is'
        " scored 0.0001 test accuracy)",
        measured="source: the default policy of the obstacle-free world (transfer_source);"
        ' target: worlds with obstacles, 10 recorded runs (transfer_target). "as is" flies'
        " the source policy on the target worlds; its offline accuracy is on the source task,"
        " so it is left out.",
        specs=("transfer_source", TRANSFER_TARGET),
        groups=(
            Group("as is", "transfer_source", offline=False),
            Group("structure only", TRANSFER_TARGET, {"train.init_from": [], "train.freeze": []}),
            Group(
                "frozen features",
                TRANSFER_TARGET,
                {"train.init_from": SOME, "train.freeze": ["backbone"]},
            ),
            Group("fine-tune", TRANSFER_TARGET, {"train.init_from": SOME, "train.freeze": []}),
            Group(
                "random features (control)",
                TRANSFER_TARGET,
                {"train.init_from": [], "train.freeze": ["backbone"]},
            ),
        ),
        claims=(
            Claim("fine-tuning beats frozen features", "fine-tune", ">", "frozen features"),
            Claim(
                "transfer about the same as training from scratch",
                "fine-tune",
                "~",
                "structure only",
            ),
            Claim(
                "the source model as is fails on the target task", "structure only", ">", "as is"
            ),
        ),
    ),
    Finding(
        name="lr_frames",
        title="Learning rate: the notes' SGD sweep for 1 and 3 frames",
        source=f'{NOTES}, "_NA: Increase input space_", learning rates 0.1, 0.01 and 0.001',
        quote="# combine winners: 0.01 [...] A clear win for the usage of multiple input"
        " samples between one and 3 frames",
        measured="tiny_nfc with 1 and 3 frames, SGD (momentum 0.9, cosine schedule) at 0.1, 0.01"
        " and 0.001, on class-balanced batches with the gradient norm clipped at 1.",
        specs=("lr_frames",),
        groups=LR_GROUPS,
        claims=(
            *(
                Claim(
                    f"3 frames beat 1 at lr {lr:g}",
                    f"3 frames, lr {lr:g}",
                    ">",
                    f"1 frame, lr {lr:g}",
                )
                for lr in (0.1, 0.01, 0.001)
            ),
            *(
                Claim(
                    f"0.01 is the best rate (3 frames): beats {lr:g}",
                    "3 frames, lr 0.01",
                    ">",
                    f"3 frames, lr {lr:g}",
                )
                for lr in (0.1, 0.001)
            ),
        ),
        x_label="learning rate (SGD)",
        x_log=True,
    ),
)
