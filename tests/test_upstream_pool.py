"""The upstream pool: sources with overlapping vocabularies in their own formats, captions,
unlabelled images; deterministic; related to downstream data but sharing no image with it."""

from __future__ import annotations

import hashlib

import pytest
from PIL import Image
from typer.testing import CliRunner

from gaia_bench.cli import app
from tests.helpers import require_debian_sources
from gaia_bench.tasks.datasets.upstream_pool import load_pool



@pytest.fixture(scope="module", autouse=True)
def _debian_sources():
    require_debian_sources()

runner = CliRunner()


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    result = runner.invoke(app, ["datasets", "prepare", "mini", "--data-root", str(root)])
    assert result.exit_code == 0, result.output
    return root


def test_prepare_mini_includes_the_pool_and_verifies(prepared):
    result = runner.invoke(app, ["datasets", "verify", "mini", "--data-root", str(prepared)])
    assert result.exit_code == 0 and "mini-upstream: ok" in result.output


def test_sources_overlap_under_different_names(prepared):
    pool = load_pool(prepared / "mini-upstream")
    assert set(pool.sources) == {"wardrobe", "catalogue", "surfaces"}
    wardrobe, catalogue = set(pool.sources["wardrobe"].classes), set(pool.sources["catalogue"].classes)
    assert not wardrobe & catalogue  # no shared spelling ...
    assert {"t-shirt", "pullover", "coat", "dress"} <= wardrobe and {"tee shirt", "sweater", "jacket", "gown"} <= catalogue
    assert len(pool.captions) == sum(len(s) for s in pool.sources.values())
    sample, caption = pool.captions[0]
    assert pool.sources["wardrobe"].classes[sample.target] in caption
    assert len(pool.unlabeled) == 400 and all(s.target is None for s in pool.unlabeled)


def test_deterministic(prepared, tmp_path):
    runner.invoke(app, ["datasets", "prepare", "mini-upstream", "--data-root", str(tmp_path)])
    a = (prepared / "mini-upstream" / "MANIFEST.sha256").read_text()
    assert a == (tmp_path / "mini-upstream" / "MANIFEST.sha256").read_text()


def test_no_downstream_image_is_in_the_pool(prepared):
    def pixels(paths):
        return {hashlib.sha256(Image.open(p).tobytes()).hexdigest() for p in paths}

    pool = load_pool(prepared / "mini-upstream")
    upstream = pixels([s.path for src in pool.sources.values() for s in src.samples] + [s.path for s in pool.unlabeled])
    downstream = pixels(sorted((prepared / "fashion-mnist-lt").rglob("*.png")))
    assert len(downstream) > 1500 and not upstream & downstream
