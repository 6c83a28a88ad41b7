"""Attention heads named as heads everywhere in the Activations tab, and
attention maps the writer reduced (`max_size`) labelled by their original
query and key positions: a real browser on a real TensorBoard.

Two runs of one small self-attention model over 20 tokens, logged with
`max_size=8`: each head's 20 x 20 map is box-reduced by 3 to 7 x 7, the last
row and column holding the two positions left (18-19).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest

from browsing import api, layer_levels, save_screenshot, serving
from support import fetch

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent
SCREENSHOTS = Path(
    os.environ.get("TB_ACTIVATIONS_SCREENSHOTS") or REPO / "test-artifacts" / "attention-heads"
)

LENGTH = 20
MAX_SIZE = 8
FACTOR = 3  # ceil(20 / 8)
KEPT = 7  # ceil(20 / 3)
SCORES = "mha/attention_scores"
WORDS = [f"w{i}" for i in range(LENGTH)]
IDS = np.array([np.arange(LENGTH) % 13 + 1, (np.arange(LENGTH) * 7) % 13 + 1], "int32")
RUNS = ("a/activations", "b/activations")


def attention_model(seed):
    import keras

    keras.utils.set_random_seed(seed)
    tokens = keras.Input((LENGTH,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(
        16, 8, embeddings_initializer=keras.initializers.RandomNormal(stddev=1.0), name="embed"
    )(tokens)
    x = keras.layers.MultiHeadAttention(2, 4, name="mha")(x, x)
    x = keras.layers.GlobalAveragePooling1D(name="pool")(x)
    return keras.Model(tokens, keras.layers.Dense(2, name="out")(x))


def true_scores(model):
    """The heads' full-size scores on the probe, from the layer itself."""
    import keras

    mha = model.get_layer("mha")
    x = model.get_layer("embed")(IDS)
    _, scores = mha(x, x, return_attention_scores=True)
    return keras.ops.convert_to_numpy(scores)


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """Run a trains for two epochs (the training map needs two steps); run b
    is one snapshot. Each head's full-size scores at the last logged step."""
    keras = pytest.importorskip("keras")
    from tb_activations import ActivationLogger, log_activations

    root = tmp_path_factory.mktemp("attention_heads")
    options = dict(verbose=0, max_size=MAX_SIZE, probe_tokens=[WORDS, WORDS[::-1]])
    model = attention_model(0)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.integers(1, 14, (32, LENGTH)).astype("int32")
    y = rng.integers(0, 2, 32)
    logger = ActivationLogger(root / "a", IDS, ["mha"], **options)
    model.fit(x, y, epochs=2, batch_size=8, verbose=0, callbacks=[logger])
    scores = {RUNS[0]: true_scores(model)}
    model = attention_model(1)
    with pytest.warns(UserWarning, match=rf"'{SCORES}' is 20x20; .* by 3 to 7x7"):
        log_activations(model, IDS, root / "b", ["mha"], **options)
    scores[RUNS[1]] = true_scores(model)
    # One head: a recurrent seq2seq model's Bahdanau attention.
    from attention_models import TOKENS, seq2seq_model

    log_activations(seq2seq_model("additive"), TOKENS, root / "c", ["att"], verbose=0)
    return root, scores


@pytest.fixture(scope="module")
def server(logged):
    with serving(logged[0], lambda tags: set(RUNS) <= set(tags)) as url:
        yield url


def layer_url(run, **more):
    extra = "".join(f"&{k}={quote(str(v), safe='')}" for k, v in more.items())
    return f"&run={quote(run, safe='')}&view=layer&layer={quote(SCORES, safe='')}{extra}"


def texts(panel, selector):
    return panel.ui.locator(selector).all_text_contents()


def titles(panel, selector):
    return panel.frame.evaluate(
        "(s) => [...document.querySelectorAll(s)].map((t) => t.title)", selector
    )


def kept_steps(server, run=RUNS[0]):
    return [s["step"] for s in api(server, "steps", run=run, tag=SCORES)["steps"]]


def spans():
    return [(i * FACTOR, min(i * FACTOR + FACTOR, LENGTH) - 1) for i in range(KEPT)]


def span_words(name, first, last, words):
    many = {"query": "queries", "key": "keys"}[name]
    picked = words[first : last + 1]
    return f"{many} {first}–{last} ({' '.join(picked)})"


# --------------------------------------------------------------------------
# A reduced map: labelled by original positions.


def test_the_header_records_the_original_size(server):
    info = api(server, "tags")[RUNS[0]][SCORES]
    assert (info["height"], info["width"]) == (KEPT, KEPT)
    assert (info["source_height"], info["source_width"]) == (LENGTH, LENGTH)


def test_a_reduced_map_is_labelled_by_original_positions(panel, server):
    for probe, words in ((0, WORDS), (1, WORDS[::-1])):
        panel.open(layer_url(RUNS[0], channel=1, probe=probe))
        panel.wait_ready(layer=SCORES, channel="1", probe=str(probe))
        assert panel.ui.locator(".axes-left .axes-title").text_content() == "queries, 3 per row"
        assert panel.ui.locator(".axes-top .axes-title").text_content() == "keys, 3 per column"
        for axis, name in (("left", "query"), ("top", "key")):
            ticks = texts(panel, f".axes-{axis} .axes-tick")
            assert len(ticks) == KEPT
            # Labelled ticks carry the first original position they cover,
            # never the reduced pixel's index or a token of that index.
            assert all(t in ("", str(first)) for t, (first, _) in zip(ticks, spans()))
            assert ticks[0] == "0" and any(t not in ("", "0") for t in ticks)
            expected = [span_words(name, a, b, words) for a, b in spans()]
            assert titles(panel, f".axes-{axis} .axes-tick") == expected
        assert expected[-1].startswith("keys 18–19 (")


def test_the_readout_names_the_queries_and_keys_a_pixel_is_the_mean_of(panel, server, logged):
    _, scores = logged
    last = kept_steps(server)[-1]
    panel.open(layer_url(RUNS[0], channel=1, probe=0, step=last))
    panel.wait_ready(layer=SCORES, channel="1", probe="0", step=str(last))
    canvas = panel.ui.locator("#detail canvas.big")
    b = canvas.bounding_box()
    head = scores[RUNS[0]][0, 1]
    for x, y in ((6, 1), (0, 6), (3, 3)):
        panel.page.mouse.move(
            b["x"] + (x + 0.5) * b["width"] / KEPT, b["y"] + (y + 0.5) * b["height"] / KEPT
        )
        readout = panel.ui.locator("#readout").text_content()
        (q0, q1), (k0, k1) = spans()[y], spans()[x]
        where = (
            f"{span_words('query', q0, q1, WORDS)}, {span_words('key', k0, k1, WORDS)}, "
            f"mean of {q1 - q0 + 1}×{k1 - k0 + 1}: "
        )
        assert readout.startswith(where), readout
        # The value read is the mean of those scores, within the quantization
        # of the head's 0..255 levels (half a level each way, plus rounding).
        value = float(readout[len(where) :].split(" ")[0])
        box = head[q0 : q1 + 1, k0 : k1 + 1]
        level = (head.max() - head.min()) / 255
        assert abs(value - box.mean()) <= level + 1e-3 * abs(box.mean()), (value, box.mean())


def test_the_reduced_levels_are_box_means_of_the_full_map(server, logged):
    _, scores = logged
    layer = api(server, "layer", run=RUNS[0], tag=SCORES, step=kept_steps(server)[-1])
    levels = layer_levels(layer)[:2].astype(np.float64)  # probe 0's two heads
    for h in range(2):
        full = scores[RUNS[0]][0, h]
        lo, hi = full.min(), full.max()
        q = np.clip(np.round((full - lo) / (hi - lo) * 255), 0, 255)
        means = np.array([[q[a : b + 1, c : d + 1].mean() for c, d in spans()] for a, b in spans()])
        assert np.abs(levels[h] - means).max() <= 1.0


# --------------------------------------------------------------------------
# Heads named as heads, wherever a channel would be named.


def test_one_head_is_counted_as_one(panel, server):
    tag = "att/attention_scores"
    panel.open(f"&run=c%2Factivations&view=layer&layer={quote(tag, safe='')}")
    panel.wait_ready(layer=tag)
    panel.ui.locator(f"body[data-timeline-rendered='{tag}']").wait_for(state="attached")
    listed = panel.ui.locator("#layers button.layer", has_text=tag).text_content()
    assert listed.endswith("· 1 head"), listed
    heading = panel.ui.locator(".layer-heading + .muted").text_content()
    assert "· 1 head, 6×6 (query × key)" in heading, heading
    assert panel.ui.locator(".tl-title").text_content() == "Head timeline · 1 head × 1 step"
    assert panel.ui.locator(".tl-rows").text_content().startswith("Rows: the one head, ")
    assert texts(panel, "#view .grid .tile .tile-label") == ["head 0"]


def test_heads_are_named_in_the_compare_pane_and_the_timeline(panel, server):
    steps = kept_steps(server)
    last, n = steps[-1], len(steps)
    assert n >= 2
    panel.open(layer_url(RUNS[0], channel=1, compare=RUNS[1], step=last))
    panel.wait_ready(layer=SCORES, channel="1", step=str(last))
    panel.ui.locator(f"body[data-compare-rendered='{RUNS[1]}']").wait_for(state="attached")
    assert texts(panel, "#view .grid .tile .tile-label") == ["head 0", "head 1"]
    assert texts(panel, "#compare-view .grid .tile .tile-label") == ["head 0", "head 1"]
    panel.ui.locator("#compare-view .grid .tile").first.hover()
    assert (
        panel.ui.locator("#compare-view .grid .tile")
        .first.get_attribute("title")
        .startswith("head 0: min ")
    )
    panel.ui.locator(f"body[data-timeline-rendered='{SCORES}']").wait_for(state="attached")
    title = panel.ui.locator(".tl-title").text_content()
    assert title == f"Head timeline · 2 heads × {n} steps", title
    assert "all 2 heads, by head index" in panel.ui.locator(".tl-rows").text_content()
    box = panel.ui.locator("#timeline-canvas").bounding_box()
    panel.page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] * 0.75)
    readout = panel.ui.locator("#timeline-readout").text_content()
    assert readout.startswith("head 1, step "), readout
    assert (
        panel.ui.locator("#grid-counts")
        .text_content()
        .startswith(f"0 of 2 heads dead at step {last}")
    )
    assert panel.ui.locator("#grid-sort option[value='index']").text_content() == "head index"
    assert panel.ui.locator("#grid-filter option[value='all']").text_content() == "all heads"
    assert panel.ui.locator("#detail .detail-title").text_content().startswith("Head 1 of")
    evolution = panel.ui.locator("#detail .section-title").first.text_content()
    assert evolution == f"Evolution of head 1 over {n} steps", evolution
    frames = titles(panel, "#evolution .frame")
    assert [t.split(",")[0] for t in frames] == [f"head 1 at step {s}" for s in steps]
    assert (
        panel.ui.locator("#download-gif")
        .get_attribute("title")
        .startswith("Head 1 over every kept step")
    )
    assert f"heads at step {last}" in panel.ui.locator("#download-grid").get_attribute("title")
    save_screenshot(
        panel,
        SCREENSHOTS / "compare-heads-reduced.png",
        ["#view .grid canvas.atlas", "#compare-view .grid canvas.atlas", "#detail canvas.big"],
        full_page=True,
    )


def test_a_heads_download_is_named_by_its_head(server, logged, tmp_path):
    """The file a head's evolution downloads as says h1, as the tab names it,
    from the tab's export route and from the command line alike."""
    name = "a_activations-mha_attention_scores-h1.gif"
    r = fetch(
        f"{server}data/plugin/activations/export?run={quote(RUNS[0], safe='')}"
        f"&tag={quote(SCORES, safe='')}&channel=1"
    )
    assert r.status == 200, r.text
    assert r.headers["content-disposition"] == f'attachment; filename="{name}"'
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "tb_activations.cli",
            "export",
            str(logged[0]),
            "--run",
            RUNS[0],
            "--layer",
            SCORES,
            "--channel",
            "1",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert (tmp_path / name).is_file(), (run.stdout, sorted(os.listdir(tmp_path)))


def test_the_training_map_hover_counts_dead_heads(panel, server):
    panel.open(f"&run={quote(RUNS[0], safe='')}&view=map&measure=dead_fraction")
    panel.ui.locator(f"body[data-map-rendered='{RUNS[0]}']").wait_for(state="attached")
    names = texts(panel, ".map-rows .map-row-name")
    assert SCORES in names
    canvas = panel.ui.locator("canvas.map-heat").first
    b = canvas.bounding_box()
    for row, name in enumerate(names):
        panel.page.mouse.move(
            b["x"] + b["width"] / 2, b["y"] + (row + 0.5) * b["height"] / len(names)
        )
        readout = panel.ui.locator(".map-readout").first.text_content()
        noun = "heads" if name == SCORES else "channels"
        assert f": dead {noun}: " in readout, (name, readout)


def test_screenshot_of_a_reduced_head_with_its_readout(panel, server):
    panel.open(layer_url(RUNS[0], channel=1, probe=0))
    panel.wait_ready(layer=SCORES, channel="1", probe="0")
    b = panel.ui.locator("#detail canvas.big").bounding_box()
    panel.page.mouse.move(b["x"] + 6.5 * b["width"] / KEPT, b["y"] + 1.5 * b["height"] / KEPT)
    assert (
        panel.ui.locator("#readout").text_content().startswith("queries 3–5 (w3 w4 w5), keys 18–19")
    )
    save_screenshot(panel, SCREENSHOTS / "reduced-head.png", ["#detail canvas.big"])
