"""How one evaluation is printed: the rich summary table and the failed-episodes line.

``python -m eval.rollout`` prints both from the results file's dict (``summary``, ``records``,
``env_kwargs``, ...), so a saved evaluation prints the same as a fresh one.
"""

from __future__ import annotations

from typing import Any

from rich.table import Table

from artifacts.cells import interval_cell, pct
from envs.controls import TWO_CONTROLS

# failed episodes the line lists by index (the results file has them all)
FAILURES_SHOWN = 10


def summary_table(data: dict[str, Any]) -> Table:
    """The rich table of one evaluation's summary."""
    s = data["summary"]
    n = s["episodes"]
    control_hz = float(data["env_kwargs"].get("control_hz", 10.0))
    if data["kind"] == "expert":
        title = "expert (reference)"
    else:
        meta = data.get("policy") or {}
        title = f"{data['run']} {data['which']} ({meta.get('net')}, {meta.get('frames')} frames)"
    indices = data.get("episode_indices")
    caption = f"{n} held-out episodes, seed {data['seed']}"
    if indices is not None:
        caption = f"held-out episodes {', '.join(map(str, indices))} of seed {data['seed']}"
    if data["overrides"]:
        caption += ", env overrides " + ", ".join(f"{k}={v}" for k, v in data["overrides"].items())
    table = Table(title=f"Closed loop: {title}", caption=caption)
    table.add_column("metric")
    table.add_column("value", justify="right")
    confidence = round(100 * s["confidence"])
    table.add_row(
        "success",
        interval_cell(
            s["success_rate"], s["success_ci_low"], s["success_ci_high"], bound_digits=1, gap="  "
        )
        + f" {confidence}% CI  ({s['successes']}/{n})",
    )
    table.add_row(
        "progress",
        f"{s['progress_m']:.1f} ± {s['progress_m_std']:.1f} m  "
        f"({pct(s['progress_frac'])} of {s['corridor_length_m']:.1f} m)",
    )
    collisions = round(s["collision_rate"] * n)
    timeouts = round(s["timeout_rate"] * n)
    by_hit = s.get("collisions_by_hit") or {}
    kinds = ", ".join(f"{count} with {_plural(kind, count)}" for kind, count in by_hit.items())
    collided = f"{collisions}/{n} ({pct(s['collision_rate'])})"
    table.add_row("collisions", f"{collided}: {kinds}" if kinds else collided)
    table.add_row("timeouts", f"{timeouts}/{n} ({pct(s['timeout_rate'])})")
    table.add_row(
        "episode length",
        f"{s['mean_steps']:.1f} steps ({s['mean_steps'] / control_hz:.1f} s)",
    )
    table.add_row("expert agreement", f"{pct(s['agreement'])} of {s['total_steps']} steps")
    if s.get("expert_nll") is not None:
        table.add_row("expert label NLL", f"{s['expert_nll']:.3f}")
    if s.get("yaw_mse") is not None:
        table.add_row("yaw MSE vs expert", f"{s['yaw_mse']:.4f}")
    if data["env_kwargs"].get("controls") == TWO_CONTROLS and s.get("speed_mean") is not None:
        table.add_row(
            "speed",
            f"{s['speed_mean']:.2f} m/s mean, {s['speed_min_median']:.2f}-"
            f"{s['speed_max_median']:.2f} per episode (medians)",
        )
    agent = "expert" if data["kind"] == "expert" else "policy"
    table.add_row(f"{agent} latency", f"{s['latency_ms']:.2f} ms/step")
    return table


def failure_line(records: list[dict[str, Any]], shown: int = FAILURES_SHOWN) -> str:
    """The episodes that did not reach the goal: index, outcome, metres flown, step.

    ``failed episodes (2): 7 collision at 2.4 m (step 19), 66 collision at 22.8 m (step 273)``:
    the first ``shown`` in index order, then how many more; an empty string when every episode
    reached the goal. The indices are what ``--only-episodes`` takes to fly them again.
    """
    failed = sorted((r for r in records if r["outcome"] != "goal"), key=lambda r: r["index"])
    if not failed:
        return ""
    parts = [
        f"{r['index']} {r['outcome']}{_with(r.get('hit'))} at {r['progress_m']:.1f} m"
        f" (step {r['steps']})"
        for r in failed[:shown]
    ]
    if len(failed) > shown:
        parts.append(f"and {len(failed) - shown} more")
    return f"failed episodes ({len(failed)}): " + ", ".join(parts)


def _plural(kind: str, count: int) -> str:
    return kind if count == 1 else f"{kind}s"


def _with(hit: str | None) -> str:
    """`` with an obstacle`` / `` with a wall`` for a collision that says what it hit."""
    if hit is None:
        return ""
    return f" with {'an' if hit[0] in 'aeiou' else 'a'} {hit}"
