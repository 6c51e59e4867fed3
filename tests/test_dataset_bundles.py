"""`gaia-bench datasets bundle / unbundle`: a prepared dataset carried as one file to a machine
without internet, byte for byte, and nothing put in place from a bundle that was cut or altered."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile

import pytest
from typer.testing import CliRunner

from gaia_bench.cli import app
from gaia_bench.jobs import UNBUNDLED
from gaia_bench.manager import get_registries
from tests.helpers import tree_digest

runner = CliRunner()
WIDE = {"COLUMNS": "200"}


def invoke(*args: str):
    return runner.invoke(app, ["datasets", *args], env=WIDE)


@pytest.fixture(scope="module")
def bundled(tmp_path_factory):
    """digits-lt prepared under one data root and bundled as a plain tar and as a .tar.gz."""
    base = tmp_path_factory.mktemp("bundles")
    for name in ("a.tar", "a.tar.gz"):
        result = invoke("bundle", "digits-lt", "-o", str(base / name), "--data-root", str(base / "root"))
        assert result.exit_code == 0, result.output
    return base


def leftovers(root):
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def test_a_bundle_unbundles_to_the_same_files_and_is_reproducible(bundled, tmp_path):
    again = invoke("bundle", "digits-lt", "-o", str(tmp_path / "b.tar.gz"), "--data-root", str(bundled / "root"))
    assert again.exit_code == 0, again.output
    assert (tmp_path / "b.tar.gz").read_bytes() == (bundled / "a.tar.gz").read_bytes()  # no times in the bytes
    result = invoke("unbundle", str(bundled / "a.tar.gz"), "--data-root", str(tmp_path / "other"))
    assert result.exit_code == 0, result.output
    assert "digits-lt: unbundled to" in result.output and "ok" in result.output
    unbundled = tmp_path / "other" / "digits-lt"
    note = json.loads((unbundled / UNBUNDLED).read_text())  # the one file added: which bundle it came from
    (unbundled / UNBUNDLED).unlink()
    assert tree_digest(unbundled) == tree_digest(bundled / "root" / "digits-lt")
    with tarfile.open(bundled / "a.tar.gz") as tar:
        manifest = tar.extractfile("gaia-bench-bundle.json").read()
    assert note["file"] == "a.tar.gz" and note["manifest_sha256"] == hashlib.sha256(manifest).hexdigest()
    assert leftovers(tmp_path / "other") == ["digits-lt"]  # no staging folder left
    # An existing dataset is kept unless --force.
    refused = invoke("unbundle", str(bundled / "a.tar"), "--data-root", str(tmp_path / "other"))
    assert refused.exit_code == 2 and "already exists" in refused.output and "--force" in refused.output
    assert invoke("unbundle", str(bundled / "a.tar"), "--data-root", str(tmp_path / "other"), "--force").exit_code == 0
    # each result on it records where its data came from: the embedded set, and this bundle
    source = get_registries().datasets.get("digits-lt").provenance(unbundled)
    assert source["kind"] == "embedded" and source["bundle"]["file"] == "a.tar"
    assert source["bundle"]["manifest_sha256"] == note["manifest_sha256"]  # same contents, another compression
    assert source["manifest_sha256"] == hashlib.sha256((unbundled / "MANIFEST.sha256").read_bytes()).hexdigest()


def test_an_altered_file_puts_nothing_in_place(bundled, tmp_path):
    data = bytearray((bundled / "a.tar").read_bytes())
    with tarfile.open(bundled / "a.tar") as tar:
        member = next(m for m in tar.getmembers() if m.isfile() and m.size > 100 and m.name.endswith(".png"))
    data[member.offset_data + 50] ^= 0xFF
    altered = tmp_path / "altered.tar"
    altered.write_bytes(bytes(data))
    result = invoke("unbundle", str(altered), "--data-root", str(tmp_path / "root"))
    assert result.exit_code == 1, result.output
    assert member.name.split("/", 1)[1] in result.output and "differs from the manifest" in result.output
    assert leftovers(tmp_path / "root") == []


def test_a_cut_bundle_is_named_damaged_and_puts_nothing_in_place(bundled, tmp_path):
    whole = (bundled / "a.tar.gz").read_bytes()
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(whole[: len(whole) // 2])
    result = invoke("unbundle", str(cut), "--data-root", str(tmp_path / "root"))
    assert result.exit_code == 1 and "damaged" in result.output and "copy it whole" in result.output
    assert "Traceback" not in result.output
    assert leftovers(tmp_path / "root") == []


def _tar(path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w") as tar:
        for name, blob in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))


def test_unsafe_paths_unlisted_files_and_unknown_datasets_are_refused(tmp_path):
    manifest = {"format": 1, "gaia_bench": "0", "datasets": [
        {"name": "digits-lt", "version": "x", "directory": "digits-lt", "files": {}}]}
    blob = json.dumps(manifest).encode()
    _tar(tmp_path / "escape.tar", {"digits-lt/../../evil.txt": b"x", "gaia-bench-bundle.json": blob})
    result = invoke("unbundle", str(tmp_path / "escape.tar"), "--data-root", str(tmp_path / "root"))
    assert result.exit_code == 1 and "unsafe path" in result.output
    assert not (tmp_path / "evil.txt").exists() and leftovers(tmp_path / "root") == []

    _tar(tmp_path / "extra.tar", {"digits-lt/extra.txt": b"x", "gaia-bench-bundle.json": blob})
    result = invoke("unbundle", str(tmp_path / "extra.tar"), "--data-root", str(tmp_path / "root"))
    assert result.exit_code == 1 and "extra.txt is not in the manifest" in result.output

    manifest["datasets"][0]["name"] = "no-such-set"
    _tar(tmp_path / "unknown.tar", {"gaia-bench-bundle.json": json.dumps(manifest).encode()})
    result = invoke("unbundle", str(tmp_path / "unknown.tar"), "--data-root", str(tmp_path / "root"))
    assert result.exit_code == 2 and "no-such-set" in result.output

    manifest["datasets"][0]["name"] = "digits-lt"
    _tar(tmp_path / "old.tar", {"gaia-bench-bundle.json": json.dumps(manifest).encode()})
    result = invoke("unbundle", str(tmp_path / "old.tar"), "--data-root", str(tmp_path / "root"))
    assert result.exit_code == 1 and "version x" in result.output and "same gaia-bench version" in result.output
    assert leftovers(tmp_path / "root") == []

    (tmp_path / "plain.txt").write_text("hello")
    result = invoke("unbundle", str(tmp_path / "plain.txt"), "--data-root", str(tmp_path / "root"))
    assert result.exit_code == 1 and "damaged or not a tar file" in result.output
    assert invoke("bundle", "digits-lt", "-o", str(tmp_path / "x.zip")).exit_code == 2


def test_a_dataset_that_is_not_there_is_not_bundled(tmp_path):
    result = invoke("bundle", "caltech101", "-o", str(tmp_path / "c.tar"), "--data-root", str(tmp_path / "root"))
    assert result.exit_code == 1 and "nothing to bundle" in result.output
    assert not (tmp_path / "c.tar").exists() and not (tmp_path / "c.tar.partial").exists()


def test_archives_come_from_the_first_source_with_the_official_checksum(tmp_path, monkeypatch):
    import hashlib

    from gaia_bench.errors import DataError
    from gaia_bench.tasks.datasets.lib.downloads import SOURCE_FILE, fetch_from_sources, record_source

    good, bad = b"the official archive", b"a different file"
    for folder, blob in (("mirror", good), ("wrong", bad)):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "data.tar").write_bytes(blob)
    md5 = hashlib.md5(good).hexdigest()
    official = (tmp_path / "gone" / "data.tar").as_uri()  # a dead official host
    mirrors = ((tmp_path / "wrong" / "data.tar").as_uri(), (tmp_path / "mirror" / "data.tar").as_uri())
    monkeypatch.delenv("GAIA_BENCH_MIRRORS", raising=False)
    path, source = fetch_from_sources(official, tmp_path / "dl" / "data.tar", md5, mirrors)
    assert source == mirrors[1] and path.read_bytes() == good  # the wrong copy was passed over
    record_source(tmp_path / "set", path, source, md5)
    entry = json.loads((tmp_path / "set" / SOURCE_FILE).read_text())["data.tar"]
    assert entry["url"] == source and entry["sha256"] == hashlib.sha256(good).hexdigest()

    monkeypatch.setenv("GAIA_BENCH_MIRRORS", str(tmp_path / "mirror"))  # the user's own mirror comes first
    _, first = fetch_from_sources(official, tmp_path / "dl2" / "data.tar", md5, ())
    assert first == (tmp_path / "mirror" / "data.tar").as_uri()

    monkeypatch.setenv("GAIA_BENCH_MIRRORS", str(tmp_path / "wrong"))
    with pytest.raises(DataError) as failed:
        fetch_from_sources(official, tmp_path / "dl3" / "data.tar", md5, ())
    assert "no source of data.tar worked" in failed.value.message and "GAIA_BENCH_MIRRORS" in failed.value.hint
    assert not (tmp_path / "dl3" / "data.tar").exists() and list((tmp_path / "dl3").glob("*")) == []
