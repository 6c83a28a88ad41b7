"""The panel's files as the static route's impl serves them (routes: test_plugin.py)."""

from __future__ import annotations

import pytest
from tensorboard import errors

from tb_activations import static


def test_the_stylesheet_is_its_parts_in_cascade_order():
    body, content_type = static.static_impl(static.STYLESHEET)
    assert content_type == "text/css; charset=utf-8"
    text = body.decode()
    at = []
    for part in static.STYLESHEET_PARTS:
        own = (static.frontend_dir() / part).read_text()
        head = f"/* {part} */\n"
        assert head + own in text, part
        at.append(text.index(head))
    assert at == sorted(at)
    assert len(text) == sum(
        len(f"/* {p} */\n") + len((static.frontend_dir() / p).read_text().rstrip("\n")) + 1
        for p in static.STYLESHEET_PARTS
    )


def test_every_part_is_still_served_alone():
    for part in static.STYLESHEET_PARTS:
        body, _ = static.static_impl(part)
        assert body == (static.frontend_dir() / part).read_bytes()


@pytest.mark.parametrize(
    "name", ["", "style", "STYLE.CSS", "style.css/", "../style.css", "style.js", "style-none.css"]
)
def test_other_names_are_not_found_and_named(name):
    with pytest.raises(errors.NotFoundError, match="No static file"):
        static.static_impl(name)


def test_a_stylesheet_part_missing_is_not_found(tmp_path, monkeypatch):
    for part in static.STYLESHEET_PARTS[1:]:
        (tmp_path / part).write_text("a {}\n")
    monkeypatch.setattr(static, "frontend_dir", lambda: tmp_path)
    with pytest.raises(errors.NotFoundError, match="style.css"):
        static.static_impl(static.STYLESHEET)
