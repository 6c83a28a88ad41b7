import math

import pytest

from tb_activations import curves


@pytest.mark.parametrize(
    "tag, axis",
    [
        ("epoch_loss", curves.EPOCH),
        ("epoch_accuracy", curves.EPOCH),
        ("batch_loss", curves.ITERATION),
        ("evaluation_loss_vs_iterations", curves.ITERATION),
        ("evaluation_loss", curves.STEP),
        ("loss", curves.STEP),
        ("custom/epoch_loss", curves.EPOCH),
        ("my_epoch_loss", curves.STEP),
    ],
)
def test_axis_of(tag, axis):
    assert curves.axis_of(tag) == axis


@pytest.mark.parametrize(
    "run, runs, expected",
    [
        (
            "activations",
            ["train", "activations", "validation"],
            ["activations", "train", "validation"],
        ),
        (
            "a/activations",
            ["a/train", "b/train", "a/validation", "a/activations", "a"],
            ["a/activations", "a/train", "a/validation"],
        ),
        ("a/activations", ["a/activations"], ["a/activations"]),
        ("a/b/activations", ["a/train", "a/b/train"], ["a/b/activations", "a/b/train"]),
    ],
)
def test_sibling_runs(run, runs, expected):
    assert curves.sibling_runs(run, runs) == expected


@pytest.mark.parametrize(
    "headers, anchors",
    [
        ([(0, 0.0), (3, 1.0), (6, 2.0)], [(0.0, 0), (1.0, 3), (2.0, 6)]),
        ([(0, 0.0), (1, 0.5), (3, 1.0)], [(0.0, 0), (0.5, 1), (1.0, 3)]),
        ([(100, None)], []),
        ([(0, 0.0), (9, 3.0), (9, 3.0), (12, 3.0)], [(0.0, 0), (3.0, 9)]),
        ([(0, float("nan")), (3, True), (6, "2")], []),
    ],
)
def test_epoch_anchors(headers, anchors):
    assert curves.epoch_anchors(headers) == anchors


ANCHORS = [(0.0, 0), (1.0, 3), (2.0, 6), (4.0, 12)]


@pytest.mark.parametrize(
    "tag, points, mapped, unmapped",
    [
        # Iteration scalars stay where they are.
        ("batch_loss", [(1, 0.5), (2, 0.25)], [[1, 0.5, 1, True], [2, 0.25, 2, True]], []),
        # Epoch e's value is at the state where e + 1 epochs were completed.
        ("epoch_loss", [(0, 0.9), (1, 0.8)], [[3.0, 0.9, 0, True], [6.0, 0.8, 1, True]], []),
        # Epoch index 2 ends between the states at 2 and 4 epochs: interpolated.
        ("epoch_loss", [(2, 0.7)], [[9.0, 0.7, 2, False]], []),
        # Past the last logged state: unmapped, not guessed.
        ("epoch_loss", [(3, 0.6), (4, 0.5)], [[12.0, 0.6, 3, True]], [[4, 0.5]]),
        # Non-finite values are kept as gaps.
        ("epoch_loss", [(0, float("nan"))], [[3.0, None, 0, True]], []),
    ],
)
def test_map_series(tag, points, mapped, unmapped):
    got = curves.map_series("train", tag, points, ANCHORS)
    assert got["points"] == mapped
    assert got["unmapped"] == unmapped
    assert got["axis"] == curves.axis_of(tag)
    assert (got["note"] is None) == (not unmapped)


def test_unmapped_note_says_why():
    got = curves.map_series("train", "epoch_loss", [(7, 1.0), (8, 2.0)], ANCHORS)
    assert got["points"] == []
    assert got["note"].startswith("2 of 2 epoch values unmapped")
    assert "epoch index 7, 8" in got["note"] and "0 to 4 epochs completed" in got["note"]
    snapshot = curves.map_series("train", "epoch_loss", [(0, 1.0)], [])
    assert "carry no epochs" in snapshot["note"]


def test_mapped_points_are_sorted_by_iteration():
    got = curves.map_series("train", "epoch_loss", [(1, 0.8), (0, 0.9)], ANCHORS)
    assert [p[0] for p in got["points"]] == [3.0, 6.0]
    assert all(not (isinstance(p[1], float) and math.isnan(p[1])) for p in got["points"])
