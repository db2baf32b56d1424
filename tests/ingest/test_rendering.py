"""Page images for the viewer: PDF pages and image pages as PNG, drawn in the isolated worker, cached
within a byte budget."""

from __future__ import annotations

import io

import pytest

import hostile
import samples
from ragchat.core.settings import IngestSettings
from ragchat.core.errors import LoadError
from ragchat.ingest.isolation import IsolatedLoader
from ragchat.ingest.rendering import MAX_VIEW_PIXELS, PngCache, render_png


def png_size(data: bytes) -> tuple[int, int]:
    from PIL import Image

    assert data.startswith(b"\x89PNG")
    with Image.open(io.BytesIO(data)) as image:
        return image.size


def test_a_pdf_page_is_drawn_at_the_width_asked(tmp_path):
    path = tmp_path / "normal.pdf"
    path.write_bytes(hostile.normal("Hello from a small normal PDF"))
    assert png_size(render_png(path, 1, 612)) == (612, 792)  # US letter, 1 pixel per point
    assert png_size(render_png(path, 1, 306)) == (306, 396)
    with pytest.raises(LoadError) as info:
        render_png(path, 2, 612)
    assert info.value.reason == "missing" and "has 1 pages" in str(info.value)
    with pytest.raises(LoadError):
        render_png(path, 1, 100_000)


def test_a_page_taller_than_the_limit_is_scaled_down(tmp_path):
    objects = hostile._objects("a very tall page")
    objects[2] = objects[2].replace(b"/MediaBox [0 0 612 792]", b"/MediaBox [0 0 100 14400]")
    path = tmp_path / "tall.pdf"
    path.write_bytes(hostile.build(objects)[0])
    width, height = png_size(render_png(path, 1, 1000))
    assert width * height <= MAX_VIEW_PIXELS * 1.01 and height > 10 * width


def test_an_image_page_and_a_tiff_page(tmp_path):
    first, second = samples.text_image(["first"], width=800), samples.text_image(["second"], width=400)
    tiff = tmp_path / "fax.tiff"
    first.save(tiff, save_all=True, append_images=[second])
    assert png_size(render_png(tiff, 2, 200)) == (200, round(second.height * 200 / 400))
    with pytest.raises(LoadError) as info:
        render_png(tiff, 3, 200)
    assert info.value.reason == "missing"
    with pytest.raises(LoadError) as info:
        render_png(samples.png_bomb(tmp_path / "bomb.png"), 1, 200)
    assert info.value.reason == "too-large"


def test_rendering_runs_in_the_worker_with_its_limits(tmp_path):
    path = tmp_path / "normal.pdf"
    path.write_bytes(hostile.normal("Hello"))
    with IsolatedLoader(IngestSettings(parse_timeout_s=10, parse_memory_mb=512)) as loader:
        assert png_size(loader.render(path, 1, 300))[0] == 300
        with pytest.raises(LoadError) as info:
            loader.render(path, 5, 300)
        assert info.value.reason == "missing"
        assert loader.load(path).pages[0].text == "Hello"  # the same worker still parses


def test_the_cache_keeps_the_most_recent_pages_within_its_budget():
    cache = PngCache(max_bytes=100)
    for page in range(1, 6):
        cache.put(("doc", "sha", page, 300), bytes(30))
    assert cache.size <= 100 and len(cache) == 3
    assert cache.get(("doc", "sha", 1, 300)) is None and cache.get(("doc", "sha", 5, 300)) == bytes(30)
    cache.get(("doc", "sha", 3, 300))  # used: kept over page 4
    cache.put(("doc", "sha", 6, 300), bytes(30))
    assert cache.get(("doc", "sha", 3, 300)) is not None and cache.get(("doc", "sha", 4, 300)) is None
    cache.put(("doc", "sha", 7, 300), bytes(500))  # larger than the whole cache: not kept
    assert cache.get(("doc", "sha", 7, 300)) is None and cache.size <= 100
