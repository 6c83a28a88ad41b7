"""The training map and the loss strip under the step slider, in a real
browser on a real TensorBoard.

The log is `recorded.train_ground_truth`'s: conv1 is frozen (its change since
the previous step is exactly 0 at every step), conv2 has channels dead from
the start and more that die at `kill_step`, and Keras's own TensorBoard
callback writes the train/validation scalars beside the activations. A
`log_activations` snapshot gives a run with a single step.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote

import pytest
from PIL import Image

from browsing import api, serving

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent
SCREENSHOT = os.environ.get("TB_ACTIVATIONS_MAP_SCREENSHOT") or str(
    REPO / "test-artifacts" / "training-map.png"
)
RUN = "gt/activations"
SNAPSHOT = "snapshot"
LAYERS = ["conv1", "conv2", "dense1"]
# This run's map: with a run compared, a second map is drawn beside it.
MAP = "#training-map"
HEAT = f"{MAP} canvas.map-heat"


@pytest.fixture(scope="module")
def truth(tmp_path_factory):
    pytest.importorskip("keras")
    from tb_activations import log_activations

    import recorded

    root = tmp_path_factory.mktemp("map_logs")
    gt = recorded.train_ground_truth(root / "gt")
    log_activations(recorded.ground_truth_model(), gt.probe, root, run_name=SNAPSHOT, verbose=0)
    return root, gt


@pytest.fixture(scope="module")
def server(truth):
    root, _ = truth
    with serving(root, lambda tags: {RUN, SNAPSHOT} <= set(tags)) as url:
        yield url


def wait_map(panel, measure="change_prev", run=RUN):
    panel.ui.locator(
        f'body[data-state=ready][data-map-rendered="{run}"][data-map-measure="{measure}"]'
    ).wait_for(state="attached")


def cell_colors(panel):
    """The colour at the centre of every map cell: [layer][step] -> (r, g, b)."""
    return panel.frame.evaluate(
        """() => {
            const c = document.querySelector("#training-map canvas.map-heat");
            const w = +c.dataset.cellWidth, h = +c.dataset.cellHeight, gap = +c.dataset.gap;
            const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
            const out = [];
            for (let r = 0; r < c.height / h; r++) {
                const row = [];
                for (let k = 0; k < c.width / w; k++) {
                    // Centre of the cell, nudged off the hatching's lines.
                    const x = Math.floor(k * w + w / 2);
                    const y = Math.floor(r * h + gap + (h - gap) / 2);
                    const i = 4 * (y * c.width + x);
                    row.push([d[i], d[i + 1], d[i + 2]]);
                }
                out.push(row);
            }
            return out;
        }"""
    )


def click_cell(panel, overview, layer, step):
    box = panel.ui.locator(HEAT).bounding_box()
    r = overview["layers"].index(layer)
    c = overview["steps"].index(step)
    panel.page.mouse.click(
        box["x"] + (c + 0.5) * box["width"] / len(overview["steps"]),
        box["y"] + (r + 0.5) * box["height"] / len(overview["layers"]),
    )


def test_map_is_a_multi_step_runs_first_view_with_real_pixels(panel, server):
    overview = api(server, "overview", run=RUN)
    assert overview["layers"] == LAYERS
    panel.open(f"&run={quote(RUN)}")
    wait_map(panel)
    assert panel.data("view") == "map"
    pixels = panel.canvas(HEAT)
    cell = int(
        panel.ui.locator(HEAT).get_attribute("data-cell-width")
    )
    assert pixels["w"] == cell * len(overview["steps"]) and pixels["h"] > 0
    assert pixels["variance"] > 10 and not pixels["gray"]
    labels = panel.ui.locator(f"{MAP} .map-row-name").all_text_contents()
    assert labels == LAYERS
    # The text alternative names the frozen layer; the URL says which view.
    alt = panel.ui.locator(HEAT).get_attribute("aria-label")
    assert "No change at any step: conv1." in alt
    panel.page.wait_for_function("() => location.hash.includes('view=map')")
    # Hover gives layer, step, epoch and value; the first step says why it has none.
    box = panel.ui.locator(HEAT).bounding_box()
    n = len(overview["steps"])
    panel.page.mouse.move(box["x"] + 1.5 * box["width"] / n, box["y"] + 1.5 * box["height"] / 3)
    value = overview["rows"]["change_prev"][1][1]
    readout = panel.ui.locator(f"{MAP} .map-readout").text_content()
    assert readout == (
        f"conv2 · step {overview['steps'][1]} (epoch 1): "
        f"change since the previous step: {float(f'{value:.3g}'):g}"
    )
    panel.page.mouse.move(box["x"] + 0.5 * box["width"] / n, box["y"] + 0.5 * box["height"] / 3)
    assert "no value: the layer's first step has no previous one" in (
        panel.ui.locator(f"{MAP} .map-readout").text_content()
    )


def test_frozen_layer_is_a_row_of_the_colour_of_zero(panel, server):
    viridis = api(server, "colormaps")["viridis"]
    zero = list(viridis[0])
    panel.open(f"&run={quote(RUN)}&view=map")
    wait_map(panel)
    colors = cell_colors(panel)
    assert len(colors) == 3
    frozen, conv2, dense1 = colors
    # Step 0 has no previous step: drawn as "no value", not as a number.
    assert frozen[0] != zero
    assert frozen[1:] == [zero] * (len(frozen) - 1)
    assert all(c != zero for c in conv2[1:] + dense1[1:])
    assert conv2[0] == dense1[0] == frozen[0], "every first step is drawn alike, as no value"


def test_a_click_on_a_cell_opens_that_layer_at_that_step(panel, server, truth):
    _, gt = truth
    overview = api(server, "overview", run=RUN)
    panel.open(f"&run={quote(RUN)}")
    wait_map(panel)
    click_cell(panel, overview, "conv2", gt.kill_step)
    panel.wait_ready(run=RUN, layer="conv2", step=str(gt.kill_step))
    assert panel.data("view") == "layer"
    panel.page.wait_for_function(
        "([step]) => location.hash.includes('layer=conv2')"
        " && location.hash.includes(`step=${step}`) && !location.hash.includes('view=map')",
        arg=[gt.kill_step],
    )
    assert panel.ui.locator(".grid .tile").count() == 16
    # Back to the map by its tab; the keyboard opens a cell too.
    panel.ui.locator("#tab-map").click()
    wait_map(panel)
    panel.ui.locator(HEAT).focus()
    panel.page.keyboard.press("ArrowDown")  # from conv1 at the slider's step to dense1's row
    panel.page.keyboard.press("ArrowDown")
    panel.page.keyboard.press("Home")
    panel.page.keyboard.press("ArrowRight")
    assert (
        panel.ui.locator(f"{MAP} .map-readout")
        .text_content()
        .startswith(f"dense1 · step {overview['steps'][1]}")
    )
    panel.page.keyboard.press("Enter")
    panel.wait_ready(run=RUN, layer="dense1", step=str(overview["steps"][1]))
    # A layer picked in the sidebar while the map is shown opens the layer view.
    panel.ui.locator("#tab-map").click()
    wait_map(panel)
    panel.pick_layer("conv1")
    assert panel.data("view") == "layer"


def test_measure_changes_the_pixels_and_survives_a_reload(panel, server, truth):
    _, gt = truth
    overview = api(server, "overview", run=RUN)
    panel.open(f"&run={quote(RUN)}")
    wait_map(panel)
    before = panel.canvas(HEAT)
    panel.ui.locator("#map-measure").select_option("dead_fraction")
    wait_map(panel, "dead_fraction")
    after = panel.canvas(HEAT)
    assert after["digest"] != before["digest"]
    # The step where conv2's channels die is a visible change along its row.
    colors = cell_colors(panel)
    k = overview["steps"].index(gt.kill_step)
    conv2 = colors[1]
    assert conv2[k - 1] != conv2[k]
    assert conv2[:k] == [conv2[0]] * k and conv2[k:] == [conv2[k]] * (len(conv2) - k)
    ticks = panel.ui.locator(f"{MAP} .colorbar-ticks span").all_text_contents()
    assert ticks[:2] == ["0%", "100%"]
    panel.page.wait_for_function("() => location.hash.includes('measure=dead_fraction')")
    panel.page.reload()
    wait_map(panel, "dead_fraction")
    assert panel.ui.locator("#map-measure").input_value() == "dead_fraction"
    assert panel.canvas(HEAT)["digest"] == after["digest"]


def test_loss_curve_is_drawn_under_the_slider_and_a_click_moves_the_step(panel, server):
    steps = api(server, "steps", run=RUN, tag="conv1")["steps"]
    kept = [s["step"] for s in steps]
    panel.open(f"&run={quote(RUN)}&layer=conv1")
    panel.ui.locator(f'body[data-curves-rendered="{RUN}"]').wait_for(state="attached")
    assert panel.data("curvesSeries") == "train/batch_loss"
    strip = panel.canvas("canvas.curves-canvas")
    assert strip["variance"] > 1 and not strip["gray"]
    keys = panel.ui.locator("#curves .curves-key-item").all_text_contents()
    assert keys[:2] == ["train/batch_loss", "validation/epoch_loss"]
    # The strip spans the slider's track: a kept step is under its notch.
    slider = panel.ui.locator("#step-slider").bounding_box()
    plot = panel.ui.locator("canvas.curves-canvas").bounding_box()
    assert plot["x"] == pytest.approx(slider["x"] + 8, abs=2)
    assert plot["x"] + plot["width"] == pytest.approx(slider["x"] + slider["width"] - 8, abs=2)
    y = plot["y"] + plot["height"] / 2
    panel.page.mouse.click(plot["x"] + 2, y)
    panel.wait_ready(step=str(kept[0]))
    target = 2
    panel.page.mouse.click(plot["x"] + plot["width"] * target / (len(kept) - 1) + 3, y)
    panel.wait_ready(step=str(kept[target]))
    assert panel.ui.locator("#step-slider").input_value() == str(target)
    # Another series, chosen in the select, is drawn instead and kept in the URL.
    panel.ui.locator("#curve-series").select_option("train/epoch_loss")
    panel.ui.locator('body[data-curves-series="train/epoch_loss"]').wait_for(state="attached")
    assert panel.canvas("canvas.curves-canvas")["digest"] != strip["digest"]
    panel.page.wait_for_function("() => location.hash.includes('curve=train%2Fepoch_loss')")


def test_one_step_run_says_so_in_words(panel, server):
    # A run with one step opens on its layer view.
    panel.open(f"&run={SNAPSHOT}")
    panel.wait_ready(run=SNAPSHOT, layer="conv1")
    assert panel.data("view") == "layer"
    # Asked for its map, it says why there is none, and links to the layer.
    panel.ui.locator("#tab-map").click()
    wait_map(panel, run=SNAPSHOT)
    message = panel.ui.locator(f"{MAP} .map-message")
    assert message.is_visible()
    assert "One logged step (step 0): the training map needs two" in message.text_content()
    assert panel.ui.locator(f"{MAP} .map-body").is_hidden()
    message.get_by_text("Open the layer view").click()
    panel.wait_ready(run=SNAPSHOT, layer="conv1", step="0")
    # No loss curves were logged beside a snapshot: the strip is not shown.
    panel.ui.locator(f'body[data-curves-rendered="{SNAPSHOT}"]').wait_for(state="attached")
    assert panel.data("curvesSeries") == ""
    assert panel.ui.locator("#curves").is_hidden()


def test_screenshot_of_the_training_map(panel, server):
    panel.page.set_viewport_size({"width": 1440, "height": 900})
    panel.open(f"&run={quote(RUN)}&view=map")
    wait_map(panel)
    box = panel.ui.locator(HEAT).bounding_box()
    panel.page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.5)
    Path(SCREENSHOT).parent.mkdir(parents=True, exist_ok=True)
    panel.page.screenshot(path=SCREENSHOT)
    assert Image.open(SCREENSHOT).size == (1440, 900)
