"""Runs side by side (frontend/compare.js) in a real browser, on a real
TensorBoard: two real training runs of one model under different seeds and
learning rates, logged at different steps, and a third run whose conv2 has
twice the channels and which does not log dense1."""

from __future__ import annotations

import base64
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from browsing import TIMEOUT_MS, api, layer_levels, save_screenshot, serving, tiles_against_logged

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent
SCREENSHOT = os.environ.get("TB_ACTIVATIONS_COMPARE_SCREENSHOT") or str(
    REPO / "test-artifacts" / "compare.png"
)

A, B, WIDE = "seed_a", "seed_b", "wide"
# A logs every epoch from the start; B trains one epoch unlogged, then logs
# every second epoch; 3 batches an epoch.
STEPS = {A: [0, 3, 6, 9, 12], B: [3, 6, 12, 15]}


def train(log_dir, run, *, seed, lr, epochs, freq, conv2=16, warmup=0):
    import keras

    from tb_activations import ActivationLogger

    from recorded import stripes

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv1")(inputs)
    x = keras.layers.MaxPooling2D(name="pool1")(x)
    x = keras.layers.Conv2D(conv2, 3, activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.Dense(12, activation="relu", name="dense1")(x)
    model = keras.Model(inputs, keras.layers.Dense(3, name="logits")(x))
    model.compile(
        keras.optimizers.Adam(lr), keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    x, y = stripes(n=96)
    if warmup:
        model.fit(x, y, batch_size=32, epochs=warmup, verbose=0)
    layers = ["conv1", "conv2", "dense1"] if conv2 == 16 else ["conv1", "conv2"]
    logger = ActivationLogger(log_dir, x[:2], layers, freq=freq, run_name=run, verbose=0)
    model.fit(
        x,
        y,
        batch_size=32,
        initial_epoch=warmup,
        epochs=warmup + epochs,
        callbacks=[logger],
        verbose=0,
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    pytest.importorskip("keras")
    logs = tmp_path_factory.mktemp("compare_logs")
    train(logs, A, seed=1, lr=0.01, epochs=4, freq=1)
    train(logs, B, seed=2, lr=0.003, epochs=4, freq=2, warmup=1)
    train(logs, WIDE, seed=3, lr=0.01, epochs=1, freq=1, conv2=32)
    with serving(logs, lambda tags: all("conv2" in tags.get(r, {}) for r in (A, B, WIDE))) as url:
        yield url


def open_at(panel, params):
    # A fresh page: a new hash on the same page would not reload the panel.
    panel.page.goto("about:blank")
    panel.open(params)
    return panel


def wait_body(panel, **data):
    sel = "body[data-state=ready]" + "".join(f'[data-{k}="{v}"]' for k, v in data.items())
    panel.ui.locator(sel).wait_for(state="attached", timeout=TIMEOUT_MS)


def tiles(panel, container):
    return [
        int(c)
        for c in panel.ui.locator(f"{container} .grid .tile").evaluate_all(
            "ts => ts.map(t => t.dataset.channel)"
        )
    ]


def values(server, run, layer, step, probe=0):
    """A layer in real units from its levels and min/max, as the panel reads it."""
    data = api(server, "layer", run=run, tag=layer, step=step, probe=probe)
    lv = layer_levels(data).astype(np.float64)
    ix = {f: i for i, f in enumerate(data["stats_fields"])}
    st = np.array([[r[ix["min"]], r[ix["max"]]] for r in data["stats"]], np.float64)
    return st[:, :1, None] + lv / 255 * (st[:, 1:2, None] - st[:, :1, None])


def readout_at(panel, x, y, shape):
    """The opened channel's readout with the mouse over map pixel (x, y)."""
    rows, cols = shape
    big = panel.ui.locator("#detail canvas.big").bounding_box()
    at_x = big["x"] + (x + 0.5) * big["width"] / cols
    at_y = big["y"] + (y + 0.5) * big["height"] / rows
    panel.page.mouse.move(at_x, at_y)
    return panel.ui.locator("#readout").text_content()


def compare_canvas(panel):
    return panel.canvas("#compare-view canvas.atlas")


# --------------------------------------------------------------------------


def test_the_runs_log_the_steps_the_cases_need(server):
    for run, steps in STEPS.items():
        got = [s["step"] for s in api(server, "steps", run=run, tag="conv2")["steps"]]
        assert got == steps, run
    assert "dense1" not in api(server, "tags")[WIDE]


def test_a_second_run_is_drawn_beside_at_its_nearest_earlier_step(panel):
    open_at(panel, f"&run={A}&layer=conv2&step=9")
    plain = panel.canvas("#view canvas.atlas")
    choices = panel.ui.locator("#compare-run option").evaluate_all("os => os.map(o => o.value)")
    assert choices == ["", B, WIDE], "every other run, and none"
    panel.ui.locator("#compare-run").select_option(B)
    wait_body(panel, **{"compare-rendered": B, "compare-step": 6, "rendered-step": 9})
    assert panel.ui.locator("#compare-other").text_content() == f"{B} · step 6 (nearest earlier)"
    assert panel.ui.locator("#compare-this").text_content() == f"{A} · step 9"
    other = compare_canvas(panel)
    assert other["variance"] > 0 and not other["gray"], "real pixels in the colormap"
    assert other["digest"] != panel.canvas("#view canvas.atlas")["digest"]
    assert tiles(panel, "#compare-view") == list(range(16))
    # Side by side: the other grid starts right of this one, on the same row.
    mine = panel.ui.locator("#view").bounding_box()
    theirs = panel.ui.locator("#compare-view").bounding_box()
    assert theirs["x"] >= mine["x"] + mine["width"] and abs(theirs["y"] - mine["y"]) < 80
    assert panel.canvas("#view canvas.atlas")["variance"] > 0 and plain["variance"] > 0
    measured = panel.frame.evaluate(
        "() => performance.getEntriesByName('activations:compare').length"
    )
    assert measured == 1
    # One slider for both: a step B has is drawn as itself.
    panel.ui.locator("#next-step").click()
    wait_body(panel, **{"compare-step": 12, "rendered-step": 12})
    assert panel.ui.locator("#compare-other").text_content() == f"{B} · step 12"
    # Before B's first kept step there is nothing to draw, in words.
    panel.ui.locator("#step-input").fill("0")
    panel.ui.locator("#step-input").press("Enter")
    wait_body(panel, **{"compare-step": "none", "rendered-step": 0})
    assert panel.ui.locator("#compare-message").text_content() == (
        f"{B} has no step of conv2 at or before step 0: its first kept step is 3."
    )
    assert panel.ui.locator("#compare-view canvas").count() == 0
    panel.page.wait_for_function(
        f"() => location.hash.includes('compare={B}') && location.hash.includes('step=0')"
    )
    panel.page.reload()
    wait_body(panel, **{"compare-rendered": B, "compare-step": "none"})
    assert panel.ui.locator("#compare-run").input_value() == B
    # None: back to one run, the key gone from the address.
    panel.ui.locator("#compare-run").select_option("")
    panel.page.wait_for_function("() => !location.hash.includes('compare=')")
    assert not panel.ui.locator("#compare-side").is_visible()


def test_the_other_grid_is_the_other_runs_own_logged_levels(panel):
    """In the gray colormap a level is its own colour: each tile beside is
    B's logged PNG at its nearest earlier step, as Chromium decodes it, and
    this grid is A's."""
    open_at(panel, f"&run={A}&layer=conv2&step=9&cmap=gray&compare={B}")
    wait_body(panel, **{"compare-rendered": B, "compare-step": 6, "rendered-step": 9})
    assert panel.data("renderedCmap") == "gray"
    assert tiles_against_logged(panel, "#compare-view", B, "conv2", 6) == {
        "tiles": 16,
        "mismatched": [],
    }
    assert tiles_against_logged(panel, "#view", A, "conv2", 9) == {"tiles": 16, "mismatched": []}
    # The check tells the runs apart: B's tiles are not A's levels.
    assert tiles_against_logged(panel, "#compare-view", A, "conv2", 9)["mismatched"]


LAYER_ASKED = """([run, step]) => performance.getEntriesByType("resource").filter((e) => {
  const u = new URL(e.name);
  return u.pathname.endsWith("/layer") && u.searchParams.get("run") === run &&
    u.searchParams.get("step") === String(step);
}).length"""


@pytest.mark.parametrize("reach", ["click", "focus"])
def test_reaching_for_the_menu_loads_the_other_runs_layer_before_the_choice(panel, server, reach):
    wide = [s["step"] for s in api(server, "steps", run=WIDE, tag="conv2")["steps"]]
    wide_at = max(s for s in wide if s <= 9)
    open_at(panel, f"&run={A}&layer=conv2&step=9")
    assert panel.frame.evaluate(LAYER_ASKED, [B, 6]) == 0
    assert panel.data("compareWarmed") is None
    getattr(panel.ui.locator("#compare-run"), reach)()
    panel.frame.wait_for_function("() => document.body.dataset.compareWarmed !== undefined")
    # Both runs, each at the step the choice would draw (B's nearest earlier one).
    assert json.loads(panel.data("compareWarmed")) == [B, WIDE]
    assert panel.frame.evaluate(LAYER_ASKED, [B, 6]) == 1
    assert panel.frame.evaluate(LAYER_ASKED, [WIDE, wide_at]) == 1
    panel.ui.locator("#compare-run").select_option(B)
    wait_body(panel, **{"compare-rendered": B, "compare-step": 6, "rendered-step": 9})
    assert panel.frame.evaluate(LAYER_ASKED, [B, 6]) == 1, "the choice drew the cached layer"
    assert compare_canvas(panel)["variance"] > 0
    # Reaching again for the same step asks for nothing more.
    panel.ui.locator("#compare-run").dispatch_event("pointerdown")
    panel.frame.wait_for_function(
        "(want) => document.body.dataset.compareWarmed === want", arg=json.dumps([WIDE])
    )
    assert panel.frame.evaluate(LAYER_ASKED, [WIDE, wide_at]) == 1


def test_the_other_grid_follows_this_grids_sort(panel, server):
    open_at(panel, f"&run={A}&layer=conv2&step=12&sort=mean&compare={B}")
    wait_body(panel, **{"compare-rendered": B, "compare-step": 12})
    t = api(server, "timeline", run=A, tag="conv2")
    mean = np.frombuffer(base64.b64decode(t["rows"]["mean"]), "<f4").reshape(16, -1)[:, -1]
    expected = sorted(range(16), key=lambda c: (-mean[c], c))
    assert tiles(panel, "#view") == expected
    assert tiles(panel, "#compare-view") == expected, "each channel beside itself"


def test_diff_run_is_this_run_minus_the_other_in_real_units(panel, server):
    open_at(panel, f"&run={A}&layer=conv2&step=9&compare={B}")
    wait_body(panel, **{"compare-rendered": B, "compare-step": 6})
    diff = values(server, A, "conv2", 9) - values(server, B, "conv2", 6)
    live = [c for c in range(16) if np.abs(diff[c]).max() > 0]
    assert live, "the runs differ"
    plain = {c: panel.tile(c)["digest"] for c in live}
    panel.ui.locator("#grid-diff").select_option("run")
    wait_body(panel, **{"compare-diff": B, "diff": 6})
    assert [c for c in live if panel.tile(c)["digest"] != plain[c]] == live
    assert not panel.tile(live[0])["gray"], "a diverging colormap"
    legend = panel.ui.locator("#legend").text_content()
    assert f"{A} step 9 − {B} step 6" in legend, legend
    m = np.abs(diff).max()
    assert re.search(r"window ±(\S+),", legend)[1] == f"{float(f'{m:.3g}'):g}"
    ticks = panel.ui.locator("#legend .colorbar-ticks span").all_text_contents()
    assert ticks[0] == f"{float(f'{-m:.3g}'):g}" and "0" in ticks, ticks
    assert panel.ui.locator("#compare-this").text_content() == f"{A} · step 9 minus {B}"
    # Hovering the opened channel reads the difference at that pixel.
    c = live[0]
    panel.ui.locator(f'#view .grid .tile[data-channel="{c}"]').click()
    panel.wait_ready(channel=str(c))
    h, w = diff.shape[1:]
    for px, py in [(w // 2, h // 2), (1, h - 2)]:
        readout = readout_at(panel, px, py, diff.shape[1:])
        got = re.search(rf"difference (\S+) \({A} step 9 − {B} step 6\)", readout)
        assert got, readout
        assert float(got[1]) == pytest.approx(diff[c, py, px], rel=0.01, abs=1e-3)
    panel.page.wait_for_function("() => location.hash.includes('diff=run')")
    panel.page.reload()
    wait_body(panel, **{"compare-diff": B, "diff": 6})
    assert panel.ui.locator("#grid-diff").input_value() == "run"
    # The two grids side by side, from their labels (clear of the sticky
    # step bar): the picture is of them.
    panel.ui.locator("#view .grid").evaluate(
        "g => { g.style.scrollMarginTop = '120px'; g.scrollIntoView({block: 'start'}); }"
    )
    drawn = ["#view .grid canvas.atlas", "#compare-view .grid canvas.atlas"]
    save_screenshot(panel, SCREENSHOT, drawn, full_page=True)


@pytest.mark.parametrize(
    "layer, why",
    [
        ("conv2", f"conv2 has 16 channels in {A} and 32 in {WIDE}"),
        ("dense1", f"{WIDE} has no layer dense1 (its layers: conv1, conv2)."),
    ],
)
def test_a_run_with_another_shape_says_why_there_is_no_difference(panel, layer, why):
    open_at(panel, f"&run={A}&layer={layer}&step=3&compare={WIDE}&diff=run")
    wait_body(panel, **{"compare-rendered": WIDE, "compare-diff": "", "diff": "none"})
    note = panel.ui.locator("#grid-note").text_content()
    assert why in note, note
    assert "Showing the activations" in note
    if layer == "conv2":
        # Its own grid is still drawn, all 32 channels in channel order.
        assert panel.data("compareStep") == "3"
        assert tiles(panel, "#compare-view") == list(range(32))
        assert compare_canvas(panel)["variance"] > 0
        assert "32 channels here, 16 in" in panel.ui.locator("#compare-side").text_content()
    else:
        assert panel.data("compareStep") == "none"
        assert panel.ui.locator("#compare-message").text_content() == why


@pytest.mark.parametrize(
    "layer, other, step",
    [("conv1", WIDE, 3), ("dense1", B, 6)],  # an image layer; a Dense layer's units
)
def test_a_layer_of_the_same_shape_in_that_run_is_subtracted(panel, server, layer, other, step):
    open_at(panel, f"&run={A}&layer={layer}&step={step}&compare={other}&diff=run")
    wait_body(panel, **{"compare-rendered": other, "compare-diff": other, "diff": step})
    m = np.abs(values(server, A, layer, step) - values(server, other, layer, step)).max()
    legend = panel.ui.locator("#legend").text_content()
    assert f"{A} step {step} − {other} step {step}; window ±{float(f'{m:.3g}'):g}," in legend
    drawn = "#compare-view canvas.atlas" if layer == "conv1" else "#compare-view canvas.map-canvas"
    assert panel.canvas(drawn)["variance"] > 0


def test_the_training_maps_are_drawn_one_under_the_other(panel, server):
    open_at(panel, f"&run={A}&view=map&compare={B}")
    panel.ui.locator(f'body[data-state=ready][data-compare-map="{B}"]').wait_for(
        state="attached", timeout=TIMEOUT_MS
    )
    mine = panel.canvas("#training-map canvas.map-heat")
    theirs = panel.canvas("#compare-map canvas.map-heat")
    assert mine["variance"] > 0 and theirs["variance"] > 0
    cells = panel.ui.locator("#compare-map canvas.map-heat").evaluate(
        "c => c.width / +c.dataset.cellWidth"
    )
    assert cells == len(api(server, "overview", run=B)["steps"])
    assert panel.ui.locator("#compare-map-this").text_content() == A
    assert panel.ui.locator("#compare-map-other").text_content() == B
    top = panel.ui.locator("#training-map").bounding_box()
    below = panel.ui.locator("#compare-map").bounding_box()
    assert below["y"] >= top["y"] + top["height"]
    assert panel.ui.locator("#compare-map-measure").is_disabled(), "one measure for both"
    panel.page.reload()
    panel.ui.locator(f'body[data-state=ready][data-compare-map="{B}"]').wait_for(
        state="attached", timeout=TIMEOUT_MS
    )
