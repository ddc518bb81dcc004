import imageio.v2 as imageio
import numpy as np
import pytest

from eval.video import (
    BAR_COLOUR,
    EXPERT_COLOUR,
    OUTCOME_COLOURS,
    POLICY_COLOUR,
    EpisodeVideo,
    FrameAnnotator,
    FrameOverlay,
    bin_names,
    draw_text,
    text_width,
)


def _frame(size=128):
    return np.full((size, size, 3), 127, dtype=np.uint8)


def _has_colour(image, colour):
    return bool(np.any(np.all(image == colour, axis=-1)))


def test_text_is_drawn_and_clipped_at_the_border():
    image = np.zeros((20, 200, 3), dtype=np.uint8)
    end = draw_text(image, 2, 14, "policy L", np.array([255, 255, 255], np.uint8))
    assert end == 2 + text_width("policy L") and image.max() > 200
    edge = np.zeros((20, 30, 3), dtype=np.uint8)
    draw_text(edge, 20, 14, "a long label cut at the border", np.array([255, 0, 0], np.uint8))
    assert edge[:, 20:, 0].max() > 0 and edge[:, :20].max() == 0


def test_bars_mark_the_policy_action_and_the_expert_label():
    annotate = FrameAnnotator(3)
    overlay = FrameOverlay(
        0,
        5,
        1.0,
        0.1,
        action=2,
        yaw=-1.0,
        probs=np.array([0.1, 0.2, 0.7]),
        expert_action=0,
        expert_command=0.8,
    )
    out = annotate(_frame(), overlay)
    assert out.shape == (128 + annotate.panel_height, 128, 3)
    assert out.shape[0] % 2 == 0
    assert np.array_equal(out[:128], _frame())  # the camera view is untouched
    panel = out[128:]
    columns = np.array_split(np.arange(128), 3)
    # the policy's chosen bin (right) is orange, the expert's (left) is outlined green
    assert _has_colour(panel[:, columns[2]], POLICY_COLOUR)
    assert not _has_colour(panel[: annotate.line * 4, columns[0]], POLICY_COLOUR)
    assert _has_colour(panel[:, columns[0]], EXPERT_COLOUR)


def test_regressor_gets_a_gauge_with_left_on_the_left():
    annotate = FrameAnnotator(3)
    out = annotate(
        _frame(),
        FrameOverlay(0, 0, 0.0, 0.0, action=0, yaw=1.0, expert_action=2, expert_command=-1.0),
    )
    bars = out[128 + annotate.line : 128 + annotate.line + annotate.bar_height]
    policy_columns = np.where(np.all(bars == POLICY_COLOUR, axis=-1).any(axis=0))[0]
    expert_columns = np.where(np.all(bars == EXPERT_COLOUR, axis=-1).any(axis=0))[0]
    assert policy_columns.max() < 20 and expert_columns.min() > 108


@pytest.mark.parametrize("outcome", ["goal", "collision", "timeout"])
def test_last_frame_shows_the_outcome_and_odd_sizes_are_cropped_even(outcome):
    annotate = FrameAnnotator(5)
    out = annotate(_frame(129), FrameOverlay(1, 40, 10.0, 1.0, outcome=outcome))
    assert out.shape[0] % 2 == 0 and out.shape[1] == 128
    panel = out[128:]
    assert _has_colour(panel, OUTCOME_COLOURS[outcome])
    assert not _has_colour(panel, BAR_COLOUR)  # nothing left to compare: no bars, no gauge


def test_bin_names_and_bad_input():
    assert bin_names(3) == ["L", "S", "R"]
    assert bin_names(5) == ["+1.0", "+.5", "+.0", "-.5", "-1.0"]
    with pytest.raises(ValueError):
        FrameAnnotator(3)(_frame(), FrameOverlay(0, 0, 0, 0, action=0, probs=np.ones(4) / 4))
    with pytest.raises(ValueError):
        FrameAnnotator(3)(np.zeros((64, 64), np.uint8), FrameOverlay(0, 0, 0, 0))
    with pytest.raises(ValueError, match="mp4 or .gif"):
        EpisodeVideo("x.avi", 10, 3)


@pytest.mark.parametrize("suffix", [".mp4", ".gif"])
def test_episode_video_round_trip(tmp_path, suffix):
    path = tmp_path / f"v{suffix}"
    with EpisodeVideo(path, 10.0, 3) as video:
        for step in range(4):
            video.add(
                _frame(96),
                FrameOverlay(
                    0,
                    step,
                    0.1 * step,
                    0.01 * step,
                    action=1,
                    yaw=0.0,
                    probs=np.array([0.2, 0.6, 0.2]),
                ),
            )
    frames = imageio.mimread(path)
    assert len(frames) == 4 and frames[0].shape[:2] == (96 + FrameAnnotator(3).panel_height, 96)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_an_aborted_video_is_removed(tmp_path):
    path = tmp_path / "v.mp4"
    with pytest.raises(KeyError), EpisodeVideo(path, 10.0, 3) as video:
        video.add(_frame(96), FrameOverlay(0, 0, 0, 0))
        raise KeyError("episode failed")
    assert list(tmp_path.iterdir()) == []
