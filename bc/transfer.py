"""Transfer learning machinery: ``--pretrained``, ``--init-from CKPT[:PART]``, ``--freeze``.

Parts are addressed by parameter-name prefix. The named submodules of every net (``encoder``,
``lstm``, ``head``; see ``bc.nets.temporal``) are the usual ones; a prefix that names a
module (``encoder.conv1``) selects that module's parameters, any other string is a plain
prefix of parameter names. ``backbone`` is another name for ``encoder``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from rich.table import Table
from torch import nn

from bc.checkpoint import read_checkpoint
from bc.errors import CheckpointError, ConfigError
from bc.nets.view import views_not_in, with_legacy_origins

ALIASES = {"backbone": "encoder"}


def _select(names: list[str], prefix: str) -> list[str]:
    prefix = ALIASES.get(prefix, prefix)
    as_module = [n for n in names if n == prefix or n.startswith(prefix + ".")]
    return as_module or [n for n in names if n.startswith(prefix)]


def _shape(tensor: torch.Tensor) -> str:
    return "(" + ", ".join(map(str, tensor.shape)) + ")"


def parse_init_from(spec: str) -> tuple[Path, str | None]:
    """Split ``CKPT[:PART]``; a colon belongs to the path when the whole string is a file."""
    if Path(spec).is_file() or ":" not in spec:
        return Path(spec), None
    path, part = spec.rsplit(":", 1)
    if not part or "/" in part:
        return Path(spec), None
    return Path(path), part


def init_from(model: nn.Module, spec: str, net_name: str, view: str | None = None) -> list[str]:
    """Copy the weights of ``CKPT[:PART[=DEST]]`` into ``model``; returns the names copied.

    ``PART=DEST`` copies the checkpoint's PART into the model's DEST, for nets whose parts
    sit elsewhere (an image-only run's ``encoder`` into an extras policy's ``image.encoder``).

    Every selected tensor must exist in ``model`` with the same shape, and without a PART
    the two nets must have the same state-dict keys; with ``view``, the encoders must read
    that view after the copy (bc.nets.view); otherwise a one-line CheckpointError.
    """
    path, part = parse_init_from(spec)
    source = read_checkpoint(path)["model"]
    target = model.state_dict()
    if part is not None and "=" in part:
        # PART=DEST: the checkpoint's PART goes to the model's DEST (another net's layout)
        part, destination = part.split("=", 1)
        source = {
            destination + name[len(ALIASES.get(part, part)) :]: tensor
            for name, tensor in source.items()
            if name in _select(list(source), part)
        }
        part = destination
    source = with_legacy_origins(source, list(target))
    names = _select(list(source), part) if part else list(source)
    if not names:
        parts = sorted({name.split(".")[0] for name in source})
        raise CheckpointError(
            f"--init-from {spec}: no parameter of the checkpoint starts with {part!r}"
            f" (its parts: {', '.join(parts)})"
        )
    if part is None:
        missing = sorted(set(target) - set(source))
        if missing:
            raise CheckpointError(
                f"--init-from {spec}: the checkpoint has no {missing[0]} for net {net_name}"
                f" ({len(missing)} tensors missing); take a part with CKPT:encoder"
            )
    for name in names:
        if name not in target:
            raise CheckpointError(
                f"--init-from {spec}: net {net_name} has no {name}; pick a part both nets"
                " share (encoder, lstm, head or a prefix)"
            )
        if source[name].shape != target[name].shape:
            raise CheckpointError(
                f"--init-from {spec}: {name} is {_shape(source[name])} in the checkpoint but"
                f" {_shape(target[name])} in net {net_name}"
            )
    # through load_state_dict, so that modules keeping values of their own (a view's crop)
    # take the copied ones
    model.load_state_dict({**target, **{name: source[name] for name in names}})
    elsewhere = views_not_in(model, view) if view is not None else []
    if elsewhere:
        raise CheckpointError(
            f"--init-from {spec}: its {elsewhere[0]} does not read the {view} view of this"
            " run; give the --view its weights were trained in (docs/nets.md)"
        )
    return names


def freeze(model: nn.Module, prefixes: list[str]) -> list[str]:
    """Stop training the parameters under ``prefixes``; returns their names."""
    names = [name for name, _ in model.named_parameters()]
    frozen: list[str] = []
    for prefix in prefixes:
        selected = _select(names, prefix)
        if not selected:
            parts = sorted({name.split(".")[0] for name in names})
            raise ConfigError(
                f"--freeze {prefix}: no parameter starts with it (parts: {', '.join(parts)})"
            )
        frozen.extend(selected)
    parameters = dict(model.named_parameters())
    for name in frozen:
        parameters[name].requires_grad_(False)
    if not any(p.requires_grad for p in model.parameters()):
        raise ConfigError("--freeze leaves no parameter to train")
    return sorted(set(frozen))


def freeze_statistics(model: nn.Module) -> None:
    """Put modules whose parameters are all frozen into eval mode.

    A frozen backbone with batch norm would otherwise still move its running statistics;
    call after every ``model.train()``.
    """
    for module in model.modules():
        own = list(module.parameters(recurse=False))
        if own and not any(p.requires_grad for p in own):
            module.eval()


def load_pretrained(model: nn.Module, path: str, net_name: str) -> None:
    """Hand ``path`` to the net's ``encoder.load_pretrained`` (the classic nets provide it)."""
    encoder = getattr(model, "encoder", None)
    loader = getattr(encoder, "load_pretrained", None)
    if not callable(loader):
        raise ConfigError(f"net {net_name} has no pretrained weights support")
    if not Path(path).exists():
        raise ConfigError(f"--pretrained {path} does not exist")
    try:
        loader(path)
    except CheckpointError:
        raise  # the backbone's own refusal already names the offending keys
    except (OSError, ValueError, RuntimeError, KeyError) as error:
        reason = " ".join(str(error).split())[:200]
        raise CheckpointError(f"--pretrained {path}: {reason}") from None


def parameter_counts(model: nn.Module) -> list[tuple[str, int, int]]:
    """``(part, trainable, frozen)`` per top-level submodule, in definition order."""
    counts: dict[str, list[int]] = {}
    for name, parameter in model.named_parameters():
        part = name.split(".")[0] if "." in name else "(root)"
        row = counts.setdefault(part, [0, 0])
        row[0 if parameter.requires_grad else 1] += parameter.numel()
    return [(part, trainable, frozen) for part, (trainable, frozen) in counts.items()]


def parameter_table(model: nn.Module, net: str) -> Table:
    """``parameter_counts`` as the table ``bc.train`` prints: per part, then all."""
    table = Table(title=f"parameters of {net}")
    for column in ("part", "trainable", "frozen", "total"):
        table.add_column(column, justify="left" if column == "part" else "right")
    rows = parameter_counts(model)
    for part, trainable, frozen in rows:
        table.add_row(part, f"{trainable:,}", f"{frozen:,}", f"{trainable + frozen:,}")
    trainable, frozen = sum(r[1] for r in rows), sum(r[2] for r in rows)
    table.add_row("all", f"{trainable:,}", f"{frozen:,}", f"{trainable + frozen:,}", style="bold")
    return table
