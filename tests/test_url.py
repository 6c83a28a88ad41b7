"""The URL leads the panel (frontend/url.js, store.js) in a real browser, on
a real TensorBoard: a hash changed in the open tab shows the view it names,
Back and Forward move between the views the user opened, and in-between
states (a slider drag, a colour choice) add no history entries of their own."""

from __future__ import annotations

import time

import pytest

from browsing import TIMEOUT_MS, api, tiles_against_logged
from support import fetch

pytestmark = [pytest.mark.browser, pytest.mark.slow]

RUN = "activations"


@pytest.fixture(scope="module")
def server(ground_truth_server):
    return ground_truth_server


def kept(server, layer):
    return [s["step"] for s in api(server, "steps", run=RUN, tag=layer)["steps"]]


def channels(server, layer):
    return api(server, "tags")[RUN][layer]["channels"]


def wait_body(panel, **data):
    sel = "body[data-state=ready]" + "".join(f'[data-{k}="{v}"]' for k, v in data.items())
    panel.ui.locator(sel).wait_for(state="attached", timeout=TIMEOUT_MS)


def wait_hash(panel, *parts, absent=()):
    panel.page.wait_for_function(
        "([want, not]) => want.every((p) => location.hash.includes(p))"
        " && !not.some((p) => location.hash.includes(p))",
        arg=[list(parts), list(absent)],
    )


def mark_page(panel):
    """Marks the panel's page, so a reload (which would lose the mark) shows."""
    panel.frame.evaluate("() => { window.__same = true; }")


def still_same_page(panel):
    return panel.frame.evaluate("() => window.__same === true")


def history_length(panel):
    return panel.page.evaluate("() => history.length")


def go(panel, how):
    panel.page.evaluate(f"() => history.{how}()")


def test_a_hash_changed_in_the_open_tab_shows_the_view_it_names(panel, server):
    conv1, conv2 = kept(server, "conv1"), kept(server, "conv2")
    panel.open(f"&run={RUN}&layer=conv1&step={conv1[0]}")
    panel.wait_ready(run=RUN, layer="conv1", step=str(conv1[0]))
    assert panel.ui.locator(".grid .tile").count() == channels(server, "conv1")
    mark_page(panel)

    # A link pasted into the address bar of the open tab: only the hash changes.
    panel.page.evaluate(
        "(h) => { location.hash = h; }",
        f"#activations&run={RUN}&layer=conv2&step={conv2[2]}&channel=3&cmap=magma",
    )
    panel.wait_ready(run=RUN, layer="conv2", step=str(conv2[2]), channel="3", cmap="magma")
    assert panel.ui.locator(".grid .tile").count() == channels(server, "conv2")
    assert panel.ui.locator("#detail").is_visible()
    assert panel.ui.locator("#colormap").input_value() == "magma"
    assert panel.ui.locator("#step-input").input_value() == str(conv2[2])
    assert panel.ui.locator("button.layer.selected .layer-name").text_content() == "conv2"

    # An edited hash: the training map, then a step that is not kept (the nearest is shown).
    panel.page.evaluate("(h) => { location.hash = h; }", f"#activations&run={RUN}&view=map")
    wait_body(panel, view="map", **{"map-rendered": RUN})
    assert panel.ui.locator("#training-map canvas.map-heat").first.is_visible()
    panel.page.evaluate(
        "(h) => { location.hash = h; }",
        f"#activations&run={RUN}&layer=conv2&step={conv2[1] + 1}",
    )
    nearest = min(conv2, key=lambda s: abs(s - (conv2[1] + 1)))
    panel.wait_ready(layer="conv2", step=str(nearest), channel="")
    assert panel.data("view") == "layer"
    assert not panel.ui.locator("#detail").is_visible()
    assert still_same_page(panel), "the panel reloaded instead of following the hash"


def test_back_and_forward_move_between_the_views_opened(panel, server):
    conv2 = kept(server, "conv2")
    panel.open(f"&run={RUN}&layer=conv1")
    panel.wait_ready(layer="conv1", step=str(kept(server, "conv1")[-1]))
    wait_hash(panel, "layer=conv1")
    mark_page(panel)
    start = history_length(panel)

    # Each opened view is an entry: a layer, a step, a channel, the map.
    panel.pick_layer("conv2")
    wait_hash(panel, "layer=conv2", f"step={conv2[-1]}")
    panel.ui.locator("#prev-step").click()
    panel.wait_ready(layer="conv2", step=str(conv2[-2]))
    wait_hash(panel, f"step={conv2[-2]}")
    panel.ui.locator(".grid .tile").nth(5).click()
    panel.wait_ready(channel="5")
    wait_hash(panel, "channel=5")
    panel.ui.locator("#tab-map").click()
    wait_body(panel, view="map", **{"map-rendered": RUN})
    wait_hash(panel, "view=map")
    assert history_length(panel) == start + 4

    go(panel, "back")
    panel.wait_ready(layer="conv2", step=str(conv2[-2]), channel="5")
    assert panel.data("view") == "layer"
    assert panel.ui.locator("#detail").is_visible()
    go(panel, "back")
    panel.wait_ready(layer="conv2", step=str(conv2[-2]), channel="")
    assert not panel.ui.locator("#detail").is_visible()
    go(panel, "back")
    panel.wait_ready(layer="conv2", step=str(conv2[-1]))
    go(panel, "back")
    panel.wait_ready(layer="conv1")
    assert panel.ui.locator(".grid .tile").count() == channels(server, "conv1")

    go(panel, "forward")
    panel.wait_ready(layer="conv2", step=str(conv2[-1]))
    go(panel, "forward")
    panel.wait_ready(layer="conv2", step=str(conv2[-2]), channel="")
    go(panel, "forward")
    panel.wait_ready(layer="conv2", step=str(conv2[-2]), channel="5")
    go(panel, "forward")
    wait_body(panel, view="map", **{"map-rendered": RUN})
    # Going back and forth added no entries, and the page never reloaded.
    assert history_length(panel) == start + 4
    assert still_same_page(panel)


def test_a_slider_drag_and_a_colour_choice_add_no_entry_of_their_own(panel, server):
    conv2 = kept(server, "conv2")
    assert len(conv2) >= 4
    panel.open(f"&run={RUN}&layer=conv2&step={conv2[0]}")
    panel.wait_ready(layer="conv2", step=str(conv2[0]))
    wait_hash(panel, f"step={conv2[0]}")
    start = history_length(panel)

    # A colour choice replaces the entry.
    panel.ui.locator("#colormap").select_option("magma")
    panel.wait_ready(cmap="magma")
    wait_hash(panel, "cmap=magma")
    assert history_length(panel) == start

    # A drag across every notch: one entry, for the step it ends on.
    panel.frame.evaluate(
        """() => {
            window.__steps = [];
            const s = document.querySelector('#step-slider');
            s.addEventListener('input', () => window.__steps.push(s.value));
        }"""
    )
    box = panel.ui.locator("#step-slider").bounding_box()
    y = box["y"] + box["height"] / 2
    panel.page.mouse.move(box["x"] + 2, y)
    panel.page.mouse.down()
    for i in range(1, 21):
        panel.page.mouse.move(box["x"] + 2 + (box["width"] - 4) * i / 20, y)
        panel.page.wait_for_timeout(40)
    panel.page.mouse.up()
    panel.wait_ready(step=str(conv2[-1]))
    wait_hash(panel, f"step={conv2[-1]}")
    passed = panel.frame.evaluate("() => new Set(window.__steps).size")
    assert passed >= 3, "the drag passed fewer notches than it should"
    assert history_length(panel) == start + 1

    # Back leaves the drag whole: the step before it, not one it passed.
    go(panel, "back")
    panel.wait_ready(layer="conv2", step=str(conv2[0]), cmap="magma")


# Every request of the iframe, by route and query, in the order started, with
# whether it started before the panel's own module (app.js) had arrived.
REQUESTS_JS = """() => {
  const all = performance.getEntriesByType("resource");
  const app = all.find((e) => e.name.endsWith("/static/app.js"));
  return all
    .filter((e) => !e.name.includes("/static/"))
    .map((e) => [e.name.split("/plugin/activations/")[1], e.startTime < app.responseEnd]);
}"""


@pytest.mark.parametrize("named_step", [False, True], ids=["latest", "named"])
def test_a_linked_layer_is_asked_for_once_and_before_the_panel_has_loaded(
    panel, server, named_step
):
    # index.js starts what the address's view needs while the modules load;
    # the app must take those answers, not ask again (URLs written alike).
    steps = kept(server, "conv2")
    step = steps[1] if named_step else steps[-1]
    panel.open(f"&run={RUN}&layer=conv2" + (f"&step={step}" if named_step else ""))
    panel.wait_ready(run=RUN, layer="conv2", step=str(step))
    requests = dict(panel.frame.evaluate(REQUESTS_JS))
    names = [n for n, _ in panel.frame.evaluate(REQUESTS_JS)]
    first = [
        "colormaps",
        "tags",
        f"curves?run={RUN}",
        f"steps?run={RUN}&tag=conv2",
        f"timeline?run={RUN}&tag=conv2",
    ]
    # Without a step in the address, the latest kept one is asked for as
    # such, before the step list is in, and the app takes it by its step.
    layer = f"layer?run={RUN}&tag=conv2&step={step if named_step else 'latest'}&probe=0"
    for url in [*first, layer]:
        assert names.count(url) == 1, (url, names)
    if not named_step:
        assert f"layer?run={RUN}&tag=conv2&step={step}&probe=0" not in names, names
        first.append(layer)
    assert all(requests[url] for url in first), requests


def test_an_early_latest_overtaken_by_a_newer_step_is_kept_as_its_own_step(panel, server):
    # Training can write a step between index.js asking for `latest` and the
    # step list coming in. The early answer then holds an older step than the
    # list's last: the app must show the last step, from its own answer and
    # not the older pixels, and keep the early one as the step it holds.
    steps = kept(server, "conv2")
    older, last = steps[-2], steps[-1]
    layer = f"layer?run={RUN}&tag=conv2&step={{}}&probe=0"
    body = fetch(f"{server}data/plugin/activations/{layer.format(older)}")
    assert body.status == 200, body.status

    def is_latest(url):
        return url.endswith("/data/plugin/activations/" + layer.format("latest"))

    # The race, made certain: `latest` answers with the server's own answer
    # for the older step, as it would have before the last step was written.
    panel.page.route(
        is_latest,
        lambda route: route.fulfill(status=200, content_type="application/json", body=body.body),
    )
    try:
        # The gray colormap draws each level as its own colour, so the tiles
        # can be checked against the logged PNGs of one step.
        panel.open(f"&run={RUN}&layer=conv2&cmap=gray")
        panel.wait_ready(run=RUN, layer="conv2", step=str(last), cmap="gray")
        names = [n for n, _ in panel.frame.evaluate(REQUESTS_JS)]
        assert names.count(layer.format("latest")) == 1, names
        assert names.count(layer.format(last)) == 1, names
        tiles = channels(server, "conv2")
        assert tiles_against_logged(panel, "#view", RUN, "conv2", last) == {
            "tiles": tiles,
            "mismatched": [],
        }
        # The check tells the two steps apart.
        assert tiles_against_logged(panel, "#view", RUN, "conv2", older)["mismatched"]

        # The early answer was kept under its own step: going there asks for nothing.
        panel.page.evaluate(
            "(h) => { location.hash = h; }",
            f"#activations&run={RUN}&layer=conv2&step={older}&cmap=gray",
        )
        panel.wait_ready(run=RUN, layer="conv2", step=str(older), cmap="gray")
        names = [n for n, _ in panel.frame.evaluate(REQUESTS_JS)]
        assert layer.format(older) not in names, names
        assert tiles_against_logged(panel, "#view", RUN, "conv2", older) == {
            "tiles": tiles,
            "mismatched": [],
        }
    finally:
        panel.page.unroute(is_latest)


def test_an_address_without_a_run_has_its_first_view_asked_for_early_and_once(panel, server):
    # No run in the address: index.js makes the app's own first choice (the
    # first run, its first layer in the model's order, and the map since
    # that layer has several kept steps) from the `tags` and `steps`
    # answers while the modules load, and the app takes those answers. The
    # app's module is held back so that it loads after the guess on any
    # machine: a slow `steps` lets the app overtake the guess, which the
    # next test covers.
    def held(route):
        time.sleep(2)
        route.continue_()

    app = "**/data/plugin/activations/static/app.js"
    panel.page.route(app, held)
    try:
        panel.open("")
        tags = api(server, "tags")
        run = next(iter(tags))
        layers = [t for t, i in tags[run].items() if i.get("layout") not in (None, "probe")]
        layer = min(layers, key=lambda t: (tags[run][t].get("position", 1e9), t))
        assert len(kept(server, layer)) > 1
        wait_body(panel, **{"map-rendered": run})
    finally:
        panel.page.unroute(app)
    names = [n for n, _ in panel.frame.evaluate(REQUESTS_JS)]
    started = panel.frame.evaluate("() => import('./static/index.js').then((m) => m.STARTED)")
    views = [
        f"curves?run={run}",
        f"steps?run={run}&tag={layer}",
        f"overview?run={run}",
        f"probe?run={run}&probe=0",
    ]
    for url in ["tags", *views]:
        assert names.count(url) == 1, (url, names)
    assert sorted(started) == sorted(["colormaps", "tags", *views]), started


def test_the_app_overtaking_the_early_guess_is_not_asked_twice(panel, server):
    # The guess for an address without a run waits for `steps`; held back
    # here, the app loads and asks for the map's overview and probe itself
    # first. index.js must then not start them again.
    def held(route):
        time.sleep(3)
        route.continue_()

    panel.page.route("**/data/plugin/activations/steps?*", held)
    try:
        panel.open("")
        run = next(iter(api(server, "tags")))
        wait_body(panel, **{"map-rendered": run})
        time.sleep(1)  # past the held answer: a late start would show now
        names = [n for n, _ in panel.frame.evaluate(REQUESTS_JS)]
    finally:
        panel.page.unroute("**/data/plugin/activations/steps?*")
    for url in [f"overview?run={run}", f"probe?run={run}&probe=0"]:
        assert names.count(url) == 1, (url, names)


def test_a_linked_map_is_asked_for_once_and_before_the_panel_has_loaded(panel):
    panel.open(f"&run={RUN}&view=map")
    wait_body(panel, **{"map-rendered": RUN})
    got = panel.frame.evaluate(REQUESTS_JS)
    names = [n for n, _ in got]
    assert names.count(f"overview?run={RUN}") == 1, names
    assert dict(got)[f"overview?run={RUN}"]
