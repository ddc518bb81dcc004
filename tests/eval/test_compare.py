import json

import imageio.v2 as imageio
import pytest

from configflags import parse_config, run_main
from eval.compare import CompareConfig, main
from eval.compare_groups import checkpoint_row
from eval.compare_table import TABLE_END, TABLE_START, write_table_into
from eval.errors import EvalError
from eval.run_files import lookup, pick_results, results_stem, write_json
from eval.stats import summarize
from tests.eval.helpers import fake_run

ENV = {"image_size": 64, "n_segments": 4, "obstacle_density": 0.0}


def _metrics(val_losses, success=None):
    rows = []
    for epoch, loss in enumerate(val_losses, 1):
        row = {
            "epoch": epoch,
            "complete": True,
            "step": 10 * epoch,
            "lr": 1e-3,
            "train": {
                "loss": loss + 0.1,
                "accuracy": 0.5 + 0.1 * epoch,
                "per_class_accuracy": [0.5, None, 0.7],
                "yaw_mse": 0.2,
                "samples": 40,
            },
            "val": {
                "loss": loss,
                "accuracy": 0.4 + 0.1 * epoch,
                "per_class_accuracy": [0.5, 0.6, 0.7],
                "yaw_mse": 0.3,
                "samples": 20,
            },
        }
        if success is not None:
            row["eval"] = {"success_rate": success[epoch - 1]}
        rows.append(row)
    return rows


def write_eval(
    run,
    successes,
    episodes=10,
    which="best_val_loss",
    seed=0,
    env=None,
    kind="policy",
    overrides=None,
    progress=0.5,
):
    records = [
        {
            "index": i,
            "seed": i,
            "outcome": "goal" if i < successes else "collision",
            "steps": 100,
            "progress_m": 30.0 * (1.0 if i < successes else progress),
            "progress_frac": 1.0 if i < successes else progress,
            "corridor_length_m": 30.0,
            "agreement": 0.9,
            "agreed_steps": 90,
            "expert_nll": 0.3,
            "yaw_mse": 0.1,
            "latency_ms": 1.0,
            "episode_return": 1.0,
            "video": None,
        }
        for i in range(episodes)
    ]
    data = {
        "format_version": 1,
        "kind": kind,
        "which": which,
        "seed": seed,
        "overrides": overrides or {},
        "env_kwargs": env or ENV,
        "summary": summarize(records),
        "records": records,
    }
    path = run / "eval" / f"{results_stem(which, seed, episodes, overrides or {})}.json"
    write_json(path, data)
    return path


@pytest.fixture
def runs_dir(tmp_path):
    """Three 3-frame runs (seeds 0-2), two 1-frame runs, and the expert's reference."""
    runs = tmp_path / "runs"
    for seed, successes in zip((0, 1, 2), (8, 6, 7), strict=True):
        run = fake_run(
            runs,
            f"2026010{seed + 1}-000000_tiny_nfc_f3",
            {"net": "tiny_nfc", "frames": 3, "seed": seed},
            _metrics([1.0, 0.5 + 0.1 * seed, 0.8], success=[0.1, 0.2, 0.3]),
        )
        write_eval(run, successes)
    for seed, successes in zip((0, 1), (2, 4), strict=True):
        run = fake_run(
            runs,
            f"2026011{seed + 1}-000000_tiny_nfc_f1",
            {"net": "tiny_nfc", "frames": 1, "seed": seed},
            _metrics([1.2, 1.1]),
        )
        write_eval(run, successes)
    expert = runs / "expert"
    write_eval(expert, 10, which="expert", kind="expert")
    return runs


def _argv(runs_dir, *argv):
    return ["--runs-dir", str(runs_dir), "--out", str(runs_dir / "plots"), *argv]


def _config(runs_dir, *argv):
    # the fixtures hold best_val_loss results (the epoch they pick is the point of some tests)
    argv = ("--which", "best_val_loss", *argv)
    return parse_config(CompareConfig, _argv(runs_dir, *argv), "python -m eval.compare")


def _rows(table):
    return [line for line in table.splitlines() if line.startswith("| ") and "---" not in line]


def test_one_row_per_run_with_the_expert_as_reference(runs_dir):
    result = main(_config(runs_dir))
    header, *rows = _rows(result.table)
    assert header.startswith("| run | runs | epoch | val.loss | val.accuracy | success")
    assert len(rows) == 6 and rows[-1].startswith("| expert | 1 |")
    first = rows[0].split(" | ")
    # best_val_loss of seed 0 is epoch 2 (0.5): training columns come from that epoch
    assert first[0] == "| 20260101-000000_tiny_nfc_f3" and first[2] == "2"
    assert first[3] == "0.500" and first[4] == "60.0%"
    assert first[5] == "80.0% [49%, 94%]"  # Wilson 95% of 8/10
    assert "Wilson" in result.table and "Warning" not in result.table


def test_group_by_aggregates_training_seeds_into_mean_and_std(runs_dir):
    result = main(_config(runs_dir, "--group-by", "net+frames", "--no-plots"))
    _, f3, f1, expert = _rows(result.table)
    cells = f3.split(" | ")
    assert cells[0] == "| net=tiny_nfc frames=3" and cells[1] == "3"
    # success 80, 60, 70%: mean 70, sample std 10; 95% t-interval 70 ± 4.3027 * 10 / sqrt(3)
    assert cells[5] == "70.0 ± 10.0% [45%, 95%]"
    # two runs: t(0.975, 1) = 12.71, so the interval is clipped to [0, 1]
    assert f1.split(" | ")[5] == "30.0 ± 14.1% [0%, 100%]"
    assert expert.startswith("| expert | 1 |")
    same = main(_config(runs_dir, "--group-by", "net", "frames", "--no-plots"))
    assert _rows(same.table) == _rows(result.table)


def test_table_is_written_between_the_markers_and_regenerates_in_place(runs_dir, tmp_path):
    doc = tmp_path / "results.md"
    doc.write_text(f"# Results\n\nintro\n\n{TABLE_START}\nold table\n{TABLE_END}\n\noutro\n")
    main(_config(runs_dir, "--table-into", str(doc), "--no-plots"))
    first = doc.read_text()
    assert first.startswith("# Results\n\nintro\n\n" + TABLE_START + "\n| run |")
    assert first.endswith(TABLE_END + "\n\noutro\n") and "old table" not in first
    main(_config(runs_dir, "--table-into", str(doc), "--no-plots"))
    assert doc.read_text() == first


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("no markers here\n", "needs the markers"),
        (f"{TABLE_END}\n{TABLE_START}\n", "needs the markers"),
        (f"{TABLE_START}\n{TABLE_END}\n{TABLE_START}\n{TABLE_END}\n", "more than one"),
    ],
)
def test_table_into_refuses_a_file_without_proper_markers(tmp_path, text, message):
    doc = tmp_path / "results.md"
    doc.write_text(text)
    with pytest.raises(EvalError, match=message):
        write_table_into(doc, "| table |")
    assert doc.read_text() == text
    with pytest.raises(EvalError, match="does not exist"):
        write_table_into(tmp_path / "missing.md", "| table |")


def test_plots_are_written_for_the_chosen_tags(runs_dir):
    result = main(
        _config(runs_dir, "--tags", "val/loss", "eval.success_rate", "--group-by", "net+frames")
    )
    names = sorted(p.name for p in result.figures)
    assert names == ["closed_loop.png", "curves_eval.success_rate.png", "curves_val.loss.png"]
    for path in result.figures:
        image = imageio.imread(path)
        assert image.shape[0] > 200 and image.std() > 0
    default = main(_config(runs_dir, "--no-plots"))
    assert default.figures == []


def test_default_tags_are_those_that_exist_and_smoothing_changes_the_curves(runs_dir):
    plain = main(_config(runs_dir))
    assert sorted(p.name for p in plain.figures) == [
        "closed_loop.png",
        "curves_eval.success_rate.png",
        "curves_train.loss.png",
        "curves_val.accuracy.png",
        "curves_val.loss.png",
    ]
    before = (runs_dir / "plots" / "curves_val.loss.png").read_bytes()
    main(_config(runs_dir, "--smooth", "0.9", "--tags", "val.loss"))
    assert (runs_dir / "plots" / "curves_val.loss.png").read_bytes() != before


def test_legend_names_rename_rows_and_must_match_the_count(runs_dir):
    result = main(
        _config(
            runs_dir,
            "--group-by",
            "frames",
            "--legend-names",
            "3 frames",
            "1 frame",
            "expert",
            "--no-plots",
        )
    )
    assert [row.split(" | ")[0] for row in _rows(result.table)[1:]] == [
        "| 3 frames",
        "| 1 frame",
        "| expert",
    ]
    with pytest.raises(EvalError, match="--legend-names has 2 names for 3 groups"):
        main(_config(runs_dir, "--group-by", "frames", "--legend-names", "a", "b"))


def test_named_runs_only_and_their_errors(runs_dir, tmp_path):
    run = runs_dir / "20260101-000000_tiny_nfc_f3"
    result = main(_config(runs_dir, str(run), "--no-plots"))
    assert len(_rows(result.table)) == 2
    with pytest.raises(EvalError, match="does not exist"):
        main(_config(runs_dir, str(tmp_path / "missing")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(EvalError, match="neither a run"):
        main(_config(runs_dir, str(tmp_path / "empty")))
    with pytest.raises(EvalError, match="no runs found"):
        main(_config(tmp_path / "nothing"))
    with pytest.raises(EvalError, match=r"no run has the metric\(s\) val.nope; available: "):
        main(_config(runs_dir, "--tags", "val.nope"))


def test_which_selects_closed_loop_results_and_missing_ones_show_a_dash(runs_dir):
    run = runs_dir / "20260101-000000_tiny_nfc_f3"
    write_eval(run, 10, which="last")
    result = main(_config(runs_dir, str(run), "--which", "last", "--no-plots"))
    cells = _rows(result.table)[1].split(" | ")
    assert cells[2] == "3" and cells[5].startswith("100.0%")  # the last epoch, its results
    result = main(_config(runs_dir, str(run), "--which", "best_success", "--no-plots"))
    assert _rows(result.table)[1].split(" | ")[5] == "-"
    assert "No closed-loop results for best_success" in result.table


def test_rows_on_different_envs_are_flagged(runs_dir):
    write_eval(
        runs_dir / "expert",
        10,
        which="expert",
        kind="expert",
        episodes=20,
        env={**ENV, "obstacle_density": 0.5},
    )
    result = main(_config(runs_dir, "--no-plots"))
    assert "**Warning**: the rows were evaluated on different envs (obstacle_density)" in (
        result.table
    )


def test_checkpoint_row_follows_the_trainers_choice():
    rows = _metrics([1.0, 0.4, 0.4, 0.9], success=[0.1, 0.7, 0.2, 0.7])
    assert checkpoint_row(rows, "best_val_loss")["epoch"] == 2  # the first of a tie
    assert checkpoint_row(rows, "best_success")["epoch"] == 2
    assert checkpoint_row(rows, "last")["epoch"] == 4
    assert checkpoint_row(_metrics([1.0]), "best_success") is None
    assert checkpoint_row([], "last") is None


def test_pick_results_prefers_more_episodes_and_the_runs_own_env(tmp_path):
    run = tmp_path / "run"
    write_eval(run, 5, episodes=10)
    write_eval(run, 18, episodes=20)
    write_eval(run, 40, episodes=40, overrides={"obstacle_density": 0.5})
    write_eval(run, 3, episodes=50, seed=1)
    assert pick_results(run, "best_val_loss", 0)["summary"]["episodes"] == 20
    assert pick_results(run, "best_val_loss", 1)["summary"]["episodes"] == 50
    assert pick_results(run, "best_val_loss", 0, overrides=True)["summary"]["episodes"] == 40
    assert pick_results(run, "last", 0) is None
    bad = run / "eval" / "broken.json"
    bad.write_text(json.dumps({"summary": {}, "records": [], "format_version": 99}))
    with pytest.raises(EvalError, match="format_version 99"):
        pick_results(run, "best_val_loss", 0)


def test_lookup_by_path_or_unique_leaf():
    config = {"net": "tiny", "model": {"frames": 3, "head": {"kind": "x"}}, "data": {"kind": "y"}}
    assert lookup(config, "net") == "tiny"
    assert lookup(config, "frames") == 3
    assert lookup(config, "model.head.kind") == "x"
    assert lookup(config, "missing") is None
    with pytest.raises(EvalError, match="ambiguous"):
        lookup(config, "kind")


def test_command_line_errors_are_one_line(runs_dir, capsys):
    for argv in (["--smooth", "1.5"], ["--eval-metrics", "speed"], ["--x", "time"]):
        with pytest.raises(SystemExit) as exit_info:
            run_main(main, CompareConfig, "python -m eval.compare", None, _argv(runs_dir, *argv))
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1
        assert argv[0] in err and argv[1] in err, err  # names the flag and the bad value
    assert not (runs_dir / "plots").exists(), "written before the refusal"


def test_named_tables_replace_only_their_own_block(tmp_path):
    doc = tmp_path / "page.md"
    doc.write_text(
        "# page\n<!-- results:start -->\nold\n<!-- results:end -->\ntext\n"
        "<!-- levers:start -->\nold levers\n<!-- levers:end -->\nend\n"
    )
    write_table_into(doc, "| levers |", name="levers")
    assert doc.read_text() == (
        "# page\n<!-- results:start -->\nold\n<!-- results:end -->\ntext\n"
        "<!-- levers:start -->\n| levers |\n<!-- levers:end -->\nend\n"
    )
    with pytest.raises(EvalError, match="<!-- other:start -->"):
        write_table_into(doc, "| x |", name="other")
