"""tasks/common.py: small helpers shared by adapters and stages."""

from __future__ import annotations

import gc
from pathlib import Path, PurePosixPath

import pytest

from tasks.common import cyclic_gc_paused, safe_relative_path


def test_the_collector_is_paused_inside_and_restored_after_even_on_error():
    assert gc.isenabled()
    with cyclic_gc_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(ValueError), cyclic_gc_paused():
        raise ValueError("boom")
    assert gc.isenabled()
    gc.disable()
    try:
        with cyclic_gc_paused():
            pass
        assert not gc.isenabled()  # a caller's own pause is left as it was
    finally:
        gc.enable()


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a/b.jpg", "a/b.jpg"),
        ("a//./b.jpg", "a/b.jpg"),
        ("a\\b.jpg", "a/b.jpg"),
        ("a/../b.jpg", "b.jpg"),
        ("a/b/", "a/b"),
        ("../b.jpg", None),
        ("a/../../b.jpg", None),
        ("/etc/passwd", None),
        ("\\share\\x", None),
        ("C:/x.jpg", None),
        ("", None),
        ("./.", None),
    ],
)
def test_safe_relative_path_normalises_or_refuses(name, expected):
    got = safe_relative_path(Path("/root"), name)
    assert got == (PurePosixPath(expected) if expected else None)
