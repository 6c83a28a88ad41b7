"""Attention heads, token probes, several inputs and token grids in the
Activations tab: a real browser on a real TensorBoard, on logs of real models.

demo/attention.py's fast mode trains its sequence-reversing transformer (its
heads form an anti-diagonal over training); a model with three inputs (an
image, token IDs logged with their strings, a table of values) and a tiny
ViT are logged beside it. Tokens are checked against the probes the models
were given, and pixels against the logged levels.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest

from browsing import Panel, api, layer_levels, save_screenshot, serving, tiles_against_logged

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "demo" / "attention.py"
SCREENSHOTS = Path(
    os.environ.get("TB_ACTIVATIONS_SCREENSHOTS") or REPO / "test-artifacts" / "readme"
)
DEMO_TIMEOUT = 900

REVERSER = "reverser/activations"
SCORES = "attention/attention_scores"
INPUTS = "inputs/activations"
INPUT_SCORES = "mha/attention_scores"
VIT = "vit/activations"
# Six tokens: with an 8 x 8 image beside them, no patch grid fits six (or
# five after a class token), so the token sequence stays a sequence.
IDS = np.array([[3, 7, 1, 12, 5, 9], [5, 4, 9, 2, 0, 0]], "int32")
WORDS = [["the", "cat", "sat", "on", "a", "mat"], ["a", "dog", "ran", "<pad>", "<pad>", "<pad>"]]
LONG_RUN = "long/activations"
LONG = 48
LONG_IDS = (np.arange(LONG, dtype="int32")[None, ::-1] + 2).copy()


def load_demo():
    spec = importlib.util.spec_from_file_location("demo_attention", DEMO)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def three_inputs():
    import keras

    image = keras.Input((8, 8, 1), name="image")
    tokens = keras.Input((6,), dtype="int32", name="tokens")
    table = keras.Input((5,), name="table")
    a = keras.layers.Conv2D(4, 3, name="conv")(image)
    a = keras.layers.GlobalAveragePooling2D(name="gap")(a)
    t = keras.layers.Embedding(16, 8, name="embed")(tokens)
    t = keras.layers.MultiHeadAttention(2, 4, name="mha")(t, t)
    t = keras.layers.GlobalAveragePooling1D(name="pool")(t)
    x = keras.layers.Concatenate(name="both")([a, t, table])
    return keras.Model([image, tokens, table], keras.layers.Dense(3, name="out")(x))


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    keras = pytest.importorskip("keras")
    from attention_models import tiny_vit

    from tb_activations import log_activations

    root = tmp_path_factory.mktemp("attention_view")
    r = subprocess.run(
        [
            sys.executable,
            str(DEMO),
            "--fast",
            "--no-tensorboard",
            "--logdir",
            str(root / "reverser"),
        ],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT,
    )
    assert r.returncode == 0, f"demo/attention.py failed:\n{r.stdout}\n{r.stderr}"
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    probe = {
        "image": rng.random((2, 8, 8, 1)).astype("float32"),
        "tokens": IDS,
        "table": rng.normal(size=(2, 5)).astype("float32"),
    }
    log_activations(
        three_inputs(), probe, root / "inputs", ["conv", "mha"], verbose=0, probe_tokens=WORDS
    )
    image = rng.random((2, 32, 32, 3)).astype("float32")
    log_activations(tiny_vit(), image, root / "vit", ["tokens", "mha"], verbose=0)
    tokens = keras.Input((LONG,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(LONG + 2, 8, name="embed")(tokens)
    x = keras.layers.MultiHeadAttention(1, 4, name="mha")(x, x)
    long_model = keras.Model(tokens, keras.layers.Dense(2, name="out")(x))
    log_activations(long_model, LONG_IDS, root / "long", ["mha"], verbose=0)
    return root


@pytest.fixture(scope="module")
def server(logdir):
    with serving(logdir, lambda tags: {REVERSER, INPUTS, VIT, LONG_RUN} <= set(tags)) as url:
        yield url


def layer_url(run, tag, **more):
    extra = "".join(f"&{k}={quote(str(v), safe='')}" for k, v in more.items())
    return f"&run={quote(run, safe='')}&view=layer&layer={quote(tag, safe='')}{extra}"


def texts(panel, selector):
    return panel.ui.locator(selector).all_text_contents()


def demo_probe():
    """The token IDs demo/attention.py probes with, made again here."""
    demo = load_demo()
    return demo.reversal(demo.PROBES, 0 + 20_000)[0]


# --------------------------------------------------------------------------
# Attention: heads are channels, with query and key axes.


def test_an_attention_series_lists_its_heads_as_channels(panel, server):
    info = api(server, "tags")[REVERSER][SCORES]
    assert (info["kind"], info["axes"], info["channels"]) == ("attention", ["query", "key"], 2)
    panel.open(layer_url(REVERSER, SCORES))
    panel.wait_ready(run=REVERSER, layer=SCORES)
    assert texts(panel, ".grid .tile .tile-label") == ["head 0", "head 1"]
    assert "2 heads, 8×8 (query × key)" in panel.ui.locator("#layer-title").text_content()
    listed = panel.ui.locator(f'#layers button[data-layer="{SCORES}"] .layer-meta')
    assert listed.text_content().endswith("2 heads")
    # The timeline and the training map take heads as they take channels.
    panel.ui.locator(f"body[data-timeline-rendered='{SCORES}']").wait_for(state="attached")
    panel.open(f"&run={quote(REVERSER, safe='')}&view=map")
    panel.ui.locator(f"body[data-map-rendered='{REVERSER}']").wait_for(state="attached")
    assert SCORES in texts(panel, ".map-rows .map-row-name")


def test_the_opened_head_has_query_and_key_axes_labelled_with_the_tokens(panel, server):
    logged = api(server, "tags")[REVERSER]["__probe__"]
    assert logged["probe_kind"] == "tokens"
    probe = demo_probe()
    assert logged["tokens"] == probe.tolist()
    for p in (0, 2):
        panel.open(layer_url(REVERSER, SCORES, channel=1, probe=p))
        panel.wait_ready(layer=SCORES, channel="1", probe=str(p))
        box = panel.ui.locator("#detail .big-box")
        assert box.get_attribute("data-axes") == "query,key"
        assert panel.ui.locator(".axes-left .axes-title").text_content() == "query"
        assert panel.ui.locator(".axes-top .axes-title").text_content() == "key"
        tokens = [str(t) for t in probe[p]]
        assert texts(panel, ".axes-left .axes-tick") == tokens
        assert texts(panel, ".axes-top .axes-tick") == tokens
    assert panel.ui.locator("#detail .detail-title").text_content().startswith("Head 1 of")
    # The readout names the query (row) and key (column) under the pointer.
    canvas = panel.ui.locator("#detail canvas.big")
    b = canvas.bounding_box()
    x, y = 2, 5
    panel.page.mouse.move(b["x"] + (x + 0.5) * b["width"] / 8, b["y"] + (y + 0.5) * b["height"] / 8)
    readout = panel.ui.locator("#readout").text_content()
    assert readout.startswith(f"query 5 ({probe[2][5]}), key 2 ({probe[2][2]}): "), readout


def test_a_long_sequence_labels_every_kth_token(panel, server):
    panel.open(layer_url(LONG_RUN, "mha/attention_scores", channel=0))
    panel.wait_ready(run=LONG_RUN, layer="mha/attention_scores", channel="0")
    for axis in ("left", "top"):
        ticks = texts(panel, f".axes-{axis} .axes-tick")
        assert len(ticks) == LONG
        labelled = [i for i, t in enumerate(ticks) if t]
        every = labelled[1] - labelled[0]
        assert every > 1 and labelled == list(range(0, LONG, every)), ticks
        assert [ticks[i] for i in labelled] == [str(LONG_IDS[0, i]) for i in labelled]
        # Each position keeps its token in its tooltip, labelled or not.
        titles = panel.frame.evaluate(
            "(s) => [...document.querySelectorAll(s)].map((t) => t.title)",
            f".axes-{axis} .axes-tick",
        )
        assert titles == [f"{i}: {t}" for i, t in enumerate(LONG_IDS[0])]


def test_the_heads_drawn_are_the_logged_levels(panel, server):
    steps = [s["step"] for s in api(server, "steps", run=REVERSER, tag=SCORES)["steps"]]
    for step in (steps[0], steps[-1]):
        panel.open(layer_url(REVERSER, SCORES, step=step, channel=0, cmap="gray"))
        panel.wait_ready(layer=SCORES, step=str(step), channel="0", cmap="gray")
        grid = tiles_against_logged(panel, "#view", REVERSER, SCORES, step)
        assert grid == {"tiles": 2, "mismatched": []}
        # The opened head, pixel for pixel, in the gray colormap.
        drawn = panel.frame.evaluate(
            """() => {
                const c = document.querySelector("#detail canvas.big");
                const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
                return Array.from({length: d.length / 4}, (_, i) => d[4 * i]);
            }"""
        )
        logged = layer_levels(api(server, "layer", run=REVERSER, tag=SCORES, step=step))
        np.testing.assert_array_equal(np.reshape(drawn, (8, 8)), logged[0])
    # Trained, each query puts its most weight on the reversed position.
    last = logged.reshape(2, 8, 8)
    assert (last.argmax(axis=2) == np.arange(8)[::-1]).all(axis=1).any()


def test_the_rust_data_server_draws_the_same_heads(browser, logdir, server, panel):
    from support import running_tensorboard, wait_until

    hash_params = layer_url(REVERSER, SCORES, channel=0, cmap="magma")
    panel.open(hash_params)
    panel.wait_ready(layer=SCORES, channel="0", cmap="magma")
    expected = [panel.tile(c)["digest"] for c in range(2)]
    ticks = texts(panel, ".axes-top .axes-tick")
    with running_tensorboard(logdir, load_fast=True) as url:
        wait_until(lambda: REVERSER in api(url, "tags"), 120, "the runs to load")
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        p = Panel(context.new_page(), url)
        p.open(hash_params)
        p.wait_ready(layer=SCORES, channel="0", cmap="magma")
        assert [p.tile(c)["digest"] for c in range(2)] == expected
        assert texts(p, ".axes-top .axes-tick") == ticks
        assert texts(p, "#probes .probe[data-probe='0'] .token") == [
            str(t) for t in demo_probe()[0]
        ]
        context.close()
        assert not p.problems, p.problems


# --------------------------------------------------------------------------
# Probe inputs, each in its form.


def test_a_token_probe_is_a_row_of_its_ids_in_order(panel, server):
    panel.open(layer_url(REVERSER, SCORES))
    panel.wait_ready(layer=SCORES)
    assert panel.data("probeInputs") == "tokens"
    probe = demo_probe()
    assert panel.ui.locator("#probes .probe").count() == len(probe) == 4
    for p, ids in enumerate(probe):
        row = f"#probes .probe[data-probe='{p}'] .probe-input[data-kind='tokens']"
        assert texts(panel, f"{row} .token") == [str(t) for t in ids]
        assert panel.ui.locator(f"{row} .input-name").text_content() == "tokens"
    # A token keeps its colour wherever it is.
    colour = panel.frame.evaluate(
        """() => {
            const seen = {};
            for (const t of document.querySelectorAll("#probes .token")) {
                (seen[t.textContent] ??= new Set()).add(t.style.background);
            }
            return Object.values(seen).every((s) => s.size === 1);
        }"""
    )
    assert colour


def test_several_inputs_are_each_shown_with_their_names(panel, server):
    tags = api(server, "tags")[INPUTS]
    kinds = {t: (tags[t]["input_name"], tags[t]["probe_kind"]) for t in tags if "__probe__" in t}
    assert kinds == {
        "__probe__": ("image", "image"),
        "__probe__/table": ("table", "values"),
        "__probe__/tokens": ("tokens", "tokens"),
    }
    panel.open(layer_url(INPUTS, "conv"))
    panel.wait_ready(run=INPUTS, layer="conv")
    assert panel.data("probeInputs") == "image,table,tokens"
    for p in (0, 1):
        probe = f"#probes .probe[data-probe='{p}']"
        assert texts(panel, f"{probe} .input-name") == ["image", "table", "tokens"]
        assert texts(panel, f"{probe} [data-input='tokens'] .token") == WORDS[p]
    # The image and the table as logged: an 8 x 8 image, a 1 x 5 strip.
    panel.page.wait_for_function(
        """() => [...document.querySelector('iframe').contentDocument
            .querySelectorAll('#probes img')].every(i => i.complete && i.naturalWidth > 0)"""
    )
    sizes = panel.frame.evaluate(
        """() => [...document.querySelectorAll("#probes .probe[data-probe='1'] img")].map(
            (i) => [i.closest("[data-input]").dataset.input, i.naturalWidth, i.naturalHeight])"""
    )
    assert sizes == [["image", 8, 8], ["table", 5, 1]]
    # The attention over the token input is labelled with its strings.
    panel.open(layer_url(INPUTS, INPUT_SCORES, channel=0, probe=1))
    panel.wait_ready(layer=INPUT_SCORES, channel="0", probe="1")
    assert texts(panel, ".axes-left .axes-tick") == WORDS[1]
    assert texts(panel, ".axes-top .axes-tick") == WORDS[1]
    # A head is not a place on the probe image: no overlay.
    panel.open(layer_url(INPUTS, INPUT_SCORES, overlay=0.6))
    panel.wait_ready(layer=INPUT_SCORES)
    assert panel.data("overlay") == "none"


# --------------------------------------------------------------------------
# Token grids: the patch tokens as maps, the class token apart.


def test_a_token_grid_has_its_class_token_apart(panel, server):
    tags = api(server, "tags")[VIT]
    assert tags["tokens"]["kind"] == "token_grid"
    assert tags["tokens/class_token"]["kind"] == "class_token"
    (step,) = [s["step"] for s in api(server, "steps", run=VIT, tag="tokens")["steps"]]
    panel.open(layer_url(VIT, "tokens", cmap="gray"))
    panel.wait_ready(run=VIT, layer="tokens")
    # The 16 patch tokens' channels, each a 4 x 4 map on the image's grid.
    assert tiles_against_logged(panel, "#view", VIT, "tokens", step) == {
        "tiles": 16,
        "mismatched": [],
    }
    panel.ui.locator(f"body[data-class-token='tokens/class_token@{step}']").wait_for(
        state="attached"
    )
    strip = panel.ui.locator(".class-token canvas[data-tag='tokens/class_token']")
    drawn = panel.frame.evaluate(
        """() => {
            const c = document.querySelector(".class-token canvas");
            const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
            return Array.from({length: d.length / 4}, (_, i) => d[4 * i]);
        }"""
    )
    logged = layer_levels(api(server, "layer", run=VIT, tag="tokens/class_token", step=step))
    assert drawn == logged.reshape(-1).tolist() and len(drawn) == 16
    assert strip.count() == 1
    # The image tools apply to the grid: the overlay on the probe image.
    panel.open(layer_url(VIT, "tokens", overlay=0.6))
    panel.wait_ready(layer="tokens")
    panel.ui.locator("body[data-overlay='0.6']").wait_for(state="attached")
    # The class token's own series, opened from the grid, links back.
    panel.ui.locator(".class-token button", has_text="open it").click()
    panel.wait_ready(layer="tokens/class_token")
    back = panel.ui.locator(".class-token button")
    assert back.text_content() == "tokens"
    back.click()
    panel.wait_ready(layer="tokens")


# --------------------------------------------------------------------------
# The README's picture.


def test_screenshot_of_the_heads_over_training(panel, server):
    """The demo's head 0 opened at the last step, its query and key tokens
    along the axes, with its evolution from the uniform start to the
    anti-diagonal: the README's picture of attention organizing."""
    # Tall enough for the whole evolution; each frame on the head's own
    # scale over every step, so the uniform start reads as uniform.
    panel.page.set_viewport_size({"width": 1440, "height": 1260})
    panel.open(layer_url(REVERSER, SCORES, channel=0, norm="channel-fixed"))
    panel.wait_ready(layer=SCORES, channel="0", norm="channel-fixed")
    panel.frame.evaluate(
        """() => {
            const size = document.querySelector("#tile-size");
            size.value = "160";
            size.dispatchEvent(new Event("input"));
        }"""
    )
    panel.ui.locator("body[data-evolution-channel='0']").wait_for(state="attached")
    save_screenshot(
        panel,
        SCREENSHOTS / "attention-heads.png",
        [".grid canvas.atlas", "#detail canvas.big", "#evolution"],
    )
