"""Fixtures shared by test modules."""

import pytest


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium per browser test module."""
    import browsing

    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError:
        browsing.unavailable("the playwright package is not installed (pip install playwright)")
    exe = browsing.chromium_path()
    if not exe:
        browsing.unavailable(
            "no Chromium found: install it (apt-get install chromium) or set CHROMIUM"
        )
    with sync_playwright() as p:
        try:
            b = p.chromium.launch(executable_path=exe, args=browsing.CHROMIUM_ARGS)
        except PlaywrightError as e:
            browsing.unavailable(f"Chromium at {exe} does not start: {e}")
        yield b
        b.close()


@pytest.fixture
def panel(browser, server):
    """The Activations tab on the test module's `server`, in a fresh browser
    context that fails the test on any console error or dialog."""
    import browsing

    with browsing.open_panel(browser, server) as p:
        yield p


@pytest.fixture(scope="session")
def ground_truth(tmp_path_factory):
    """`recorded.train_ground_truth`'s run, trained once for the modules
    that only read it."""
    pytest.importorskip("keras")
    import recorded

    return recorded.train_ground_truth(tmp_path_factory.mktemp("ground_truth_logs"))


@pytest.fixture(scope="session")
def ground_truth_server(ground_truth):
    """A `tensorboard` process on `ground_truth`, once its conv2 is listed."""
    import browsing

    run = "activations"
    with browsing.serving(ground_truth.log_dir, lambda tags: "conv2" in tags.get(run, {})) as url:
        yield url
