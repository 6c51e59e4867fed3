"""The 20 GV-B classification dataset plugins on tiny replicas of their official layouts
(tests/gvb_replicas.py): counts, labels, splits, the percentage-shot subset, verify's messages on
broken copies, GV-B's own meta lists, the suite declaration, `datasets prepare --download` from a
local archive, safe extraction, and unreadable images under --on-bad-sample fail / skip."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import zipfile
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gaia_bench.cli import app
from gaia_bench.errors import DataError
from gaia_bench.jobs import data_dir
from gaia_bench.manager import get_registries
from gaia_bench.shots import parse_shot, sample_subset
from gaia_bench.store import ResultsStore
from tests.gvb_replicas import WRITERS, write_replica

runner = CliRunner()
WIDE = {"COLUMNS": "250"}
GVB_JSON = Path(__file__).resolve().parents[1] / "leaderboards" / "references" / "gvb_readme.json"
FAST = ["--model", "test_resnet", "--image-size", "32", "--shots", "10%"]


@pytest.fixture(scope="module")
def regs():
    return get_registries()


@pytest.fixture(scope="module")
def replicas(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("gvb-data")
    return root, {name: write_replica(name, root) for name in WRITERS}


def _text(result) -> str:
    return " ".join(result.output.split())


@pytest.mark.parametrize("name", list(WRITERS))
def test_plugin_reads_its_official_layout(regs, replicas, name):
    root, expected = replicas
    spec = regs.datasets.get(name)
    assert spec.task == "classification" and spec.prepare is None  # a run never downloads
    for split, counts in expected[name].items():
        samples = spec.load(data_dir(root, spec), split)
        labels = Counter(samples.labels())
        assert [labels[c] for c in range(len(counts))] == counts, split
        assert len(samples) == sum(counts) and len({s.key for s in samples.samples}) == len(samples)
        assert len(samples.classes) >= len(counts)
        from gaia_bench.imagedata import read_error

        assert read_error(samples.samples[0]) == ""
    train = spec.load(data_dir(root, spec), spec.train_split)
    subset = sample_subset(train.label_sets(), [s.key for s in train.samples], parse_shot("10%"), 0, True)
    per_class = Counter(train.labels()[i] for i in subset)
    n_c = expected[name][spec.train_split]
    assert [per_class[c] for c in range(len(n_c))] == [max(1, int(0.1 * n + 0.5)) for n in n_c]


def test_format_details(regs, replicas):
    root, _ = replicas
    load = lambda name, split: regs.datasets.get(name).load(data_dir(root, regs.datasets.get(name)), split)  # noqa: E731
    svhn = load("svhn", "train")
    assert svhn.samples[0].target == 0  # stored as 10 in the .mat, as torchvision maps it
    cifar = load("cifar10", "train")
    assert cifar.classes[:2] == ["class0", "class1"] and cifar.samples[0].key == "data_batch_1/00000"
    assert cifar.samples[0].decode().size == (32, 32)
    assert load("fer2013", "train").samples[0].decode().size == (48, 48)
    ucf = load("ucf101", "test")
    assert all(s.path.name == "img_00002.jpg" for s in ucf.samples)  # the middle of 3 frames
    assert load("kinetics700", "train").classes == ["abseiling", "juggling balls", "zumba"]
    kinetics = regs.datasets.get("kinetics700")
    assert kinetics.verify(data_dir(root, kinetics))[-2:] == [
        f"1 clip(s) of annotations/{csv} have no frames under rawframes/{split}/ (gone from YouTube, or not extracted "
        "yet): runs leave them out; extract the frames of the clips you have (see `gaia-bench datasets prepare "
        "kinetics700`)" for csv, split in (("train.csv", "train"), ("validate.csv", "val"))]
    caltech = load("caltech101", "train")
    assert "BACKGROUND_Google" in caltech.classes  # GV-B's 102 classes
    assert set(load("eurosat", "train").samples).isdisjoint(load("eurosat", "test").samples)


def test_suite_declares_the_26_as_the_leaderboard_names_them(regs):
    from gaia_bench.tasks.datasets.suites import load_protocols

    reference = {d["name"]: d for d in json.loads(GVB_JSON.read_text())["datasets"]}
    suite = regs.suites.get("gvb")
    protocols = load_protocols("gvb")
    assert list(suite.datasets) == list(reference) and len(suite.datasets) == 26 and set(protocols) == set(reference)
    for name, declared in protocols.items():
        assert declared["task"] == reference[name]["task"] and declared["primary_metric"] == reference[name]["metric"]
        if declared["task"] == "classification":
            spec = regs.datasets.get(name)
            assert (spec.train_split, spec.test_split) == (declared["train_split"], declared["test_split"])
            assert spec.primary_metric == declared["primary_metric"] and spec.primary_metric in declared["metrics"]


def test_verify_reports_every_problem_with_its_fix(regs, tmp_path):
    write_replica("food101", tmp_path)
    root = tmp_path / "food-101"
    images = sorted((root / "images").rglob("*.jpg"))
    images[0].unlink()  # listed in a split, gone
    images[1].write_bytes(images[1].read_bytes()[:40])  # truncated
    images[2].write_bytes(b"not a jpeg")  # garbage
    (root / "images" / images[3].parent.name / "stray.jpg").write_bytes(images[4].read_bytes())  # in no split
    result = runner.invoke(app, ["datasets", "verify", "food101", "--data-root", str(tmp_path)], env=WIDE)
    text = _text(result)
    assert result.exit_code == 1 and "Traceback" not in text
    assert f"missing file {images[0]}" in text
    assert f"unreadable image {images[1]}" in text and f"unreadable image {images[2]}" in text
    assert "--on-bad-sample skip" in text
    assert f"unexpected file {root / 'images' / images[3].parent.name / 'stray.jpg'}" in text
    assert "train split has 34 images, expected 75750" in text

    write_replica("cifar10", tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    text = _text(runner.invoke(app, ["datasets", "verify", "cifar10", "--data-root", str(tmp_path)], env=WIDE))
    assert f"missing {tmp_path / 'cifar-10-batches-py' / 'data_batch_3'}" in text
    assert "cannot read split train" in text and "gaia-bench datasets prepare cifar10 --download" in text
    assert "has md5" in text and "the official file has c99cafc152244af753f735de768cd75f" in text
    absent = _text(runner.invoke(app, ["datasets", "verify", "imagenet", "--data-root", str(tmp_path)], env=WIDE))
    assert "does not exist" in absent and "manual steps" in absent


def test_listing_prepare_hints_and_gvb_lists(tmp_path, replicas):
    root, _ = replicas
    listing = runner.invoke(app, ["datasets", "--data-root", str(root)], env=WIDE).output
    rows = {line.split()[1]: line for line in listing.splitlines() if line.startswith("│") and "classification" in line}
    assert {"cifar10", "imagenet", "kinetics700", "pets"} <= set(rows)
    assert "train 50000" in rows["cifar10"] and "test 10000" in rows["cifar10"] and "yes" in rows["cifar10"]
    assert "mean_per_class_acc" in rows["pets"] and "trainval 3680" in rows["pets"]
    manual = runner.invoke(app, ["datasets", "prepare", "imagenet", "--data-root", str(tmp_path)], env=WIDE)
    text = _text(manual)
    assert manual.exit_code == 0 and "ILSVRC2012_img_train.tar" in text and "train/<wnid>/*.JPEG" in text
    no_public = _text(runner.invoke(app, ["datasets", "prepare", "fer2013", "--download", "--data-root", str(tmp_path)], env=WIDE))
    assert "has no public download" in no_public and "kaggle competitions download" in no_public

    # GV-B's own export: train_meta.list / test_meta.list beside the images
    gvb = tmp_path / "gvb-flowers"
    for split, n in (("train", 4), ("test", 2)):
        lines = []
        for i in range(n):
            rel = f"{split}/{i}.png"
            (gvb / split).mkdir(parents=True, exist_ok=True)
            (gvb / rel).write_bytes((root / "flowers-102" / "jpg" / "image_00001.jpg").read_bytes())
            lines.append(f"{rel} {i % 2 + 100}\n")
        (gvb / f"{split}_meta.list").write_text("".join(lines))
    linked = runner.invoke(app, ["datasets", "prepare", "flowers", "--gvb-lists", str(gvb), "--data-root", str(tmp_path)])
    assert linked.exit_code == 0, linked.output
    spec = get_registries().datasets.get("flowers")
    train = spec.load(data_dir(tmp_path, spec), "train")
    assert len(train) == 4 and train.labels() == [100, 101, 100, 101] and len(train.classes) == 102
    assert runner.invoke(app, ["datasets", "verify", "flowers", "--data-root", str(tmp_path)]).exit_code == 0
    source = spec.provenance(data_dir(tmp_path, spec))  # a result on it records which lists it read
    assert source["kind"] == "gvb-lists" and source["lists"]["train_meta.list"] == hashlib.sha256(
        (gvb / "train_meta.list").read_bytes()).hexdigest()
    (gvb / "test_meta.list").write_text("test/0.png 102\n")  # outside the 102 classes
    text = _text(runner.invoke(app, ["datasets", "verify", "flowers", "--data-root", str(tmp_path)], env=WIDE))
    assert "label 102 is outside 0..101" in text


def _tar(path: Path, members: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return path


@pytest.mark.parametrize("members,links", [
    ({"ok.txt": b"x", "../escaped.txt": b"x"}, None),
    ({"/tmp/gaia-bench-absolute.txt": b"x"}, None),
    ({"ok.txt": b"x"}, {"link": "../../outside"}),
    ({"ok.txt": b"x"}, {"abs": "/etc/passwd"}),
])
def test_safe_extract_refuses_escapes(tmp_path, members, links):
    from gaia_bench.tasks.datasets.lib.downloads import safe_extract

    archive = _tar(tmp_path / "evil.tar.gz", members, links)
    target = tmp_path / "target"
    with pytest.raises(DataError, match="unsafe archive"):
        safe_extract(archive, target)
    assert not (tmp_path / "escaped.txt").exists() and not (target / "ok.txt").exists()
    evil_zip = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil_zip, "w") as zf:
        zf.writestr("fine.txt", "x")
        zf.writestr("../zip-escaped.txt", "x")
    with pytest.raises(DataError, match="outside"):
        safe_extract(evil_zip, target)
    assert not (tmp_path / "zip-escaped.txt").exists() and not (target / "fine.txt").exists()


def test_download_fetches_checks_and_lays_out(tmp_path, monkeypatch):
    from gaia_bench.tasks.datasets.lib.downloads import file_digest
    from gaia_bench.tasks.datasets.gvb_classification import GVB_SETS, Archive

    source = tmp_path / "mirror"
    write_replica("cifar10", source)
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    local = replace(GVB_SETS["cifar10"], archives=(Archive(archive.as_uri(), file_digest(archive), ".."),))
    target = tmp_path / "data" / "cifar-10-batches-py"
    local.download(target)
    assert len(local.load(target, "train")) == 34 and not (target / ".downloads").exists()
    assert sorted(p.name for p in target.iterdir()) == sorted([".gaia-bench-source.json", *(
        p.name for p in (source / "cifar-10-batches-py").iterdir())])
    fetched = json.loads((target / ".gaia-bench-source.json").read_text())["cifar-10-python.tar.gz"]
    assert fetched["url"] == archive.as_uri() and fetched["md5"] == file_digest(archive)  # where the data came from
    provenance = get_registries().datasets.get("cifar10").provenance  # what each result records as its data_source
    assert provenance(target) == {"kind": "downloaded", "files": {"cifar-10-python.tar.gz": fetched}}
    by_hand = provenance(source / "cifar-10-batches-py")
    assert by_hand["kind"] == "local" and by_hand["official_archives"] == [
        {"url": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "md5": "c58f30108f718f92721af3b95e74349a"}]

    # through the CLI: the official URL answered by a local copy whose md5 is not the official one
    import urllib.request

    real_urlopen = urllib.request.urlopen
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout=None: real_urlopen(archive.as_uri(), timeout=timeout))
    result = runner.invoke(app, ["datasets", "prepare", "cifar10", "--download", "--data-root", str(tmp_path / "cli")],
                           env=WIDE)
    text = _text(result)
    assert result.exit_code == 1 and "downloaded with md5" in text and "expected c58f30108f718f92721af3b95e74349a" in text
    assert not list((tmp_path / "cli").rglob("*.tmp")) and not (tmp_path / "cli" / "cifar-10-batches-py" / "data_batch_1").exists()

    # --offline: only the user's mirror folders are read, the official host is never asked
    opened: list[str] = []
    monkeypatch.setattr(urllib.request, "urlopen",
                        lambda url, timeout=None: opened.append(url) or real_urlopen(url, timeout=timeout))
    monkeypatch.setenv("GAIA_BENCH_MIRRORS", str(tmp_path))  # holds cifar-10-python.tar.gz, not the official one
    monkeypatch.delenv("GAIA_BENCH_OFFLINE", raising=False)
    result = runner.invoke(app, ["datasets", "prepare", "cifar10", "--download", "--offline", "--data-root",
                                 str(tmp_path / "off")], env=WIDE)
    text = _text(result)
    assert result.exit_code == 1 and opened == [archive.as_uri()] and "downloaded with md5" in text
    assert "cannot fetch https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz: downloads are off (--offline" in text
    assert "GAIA_BENCH_OFFLINE" not in os.environ  # set for the command (and the processes it starts) only


def test_a_cut_download_is_named_moved_aside_and_fetched_anew_next_time(tmp_path, monkeypatch):
    from gaia_bench.tasks.datasets.gvb_classification import GVB_SETS, Archive

    source = tmp_path / "mirror"
    write_replica("cifar10", source)
    good = tmp_path / "good.tar.gz"
    with tarfile.open(good, "w:gz") as tar:
        tar.add(source / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    served = tmp_path / "served.tar.gz"
    served.write_bytes(good.read_bytes()[: good.stat().st_size // 2])  # the connection dropped half-way
    local = replace(GVB_SETS["cifar10"], archives=(Archive(served.as_uri(), None, ".."),))
    monkeypatch.setitem(GVB_SETS, "cifar10", local)
    target = tmp_path / "data" / "cifar-10-batches-py"
    result = runner.invoke(app, ["datasets", "prepare", "cifar10", "--download", "--data-root", str(tmp_path / "data")],
                           env=WIDE)
    text = _text(result)
    assert result.exit_code == 1 and "Aborted" not in text and "Traceback" not in text
    assert "served.tar.gz is damaged" in text and "run the same command again" in text
    assert list(target.rglob("*.broken")) and not list(target.rglob("served.tar.gz"))
    served.write_bytes(good.read_bytes())  # the next attempt gets the whole file
    again = runner.invoke(app, ["datasets", "prepare", "cifar10", "--download", "--data-root", str(tmp_path / "data")],
                          env=WIDE)
    assert again.exit_code == 0, again.output
    assert len(local.load(target, "train")) == 34


def test_suite_runs_present_datasets_and_skips_absent(tmp_path, monkeypatch):
    monkeypatch.setenv("GAIA_BENCH_HOME", str(tmp_path / "home"))
    data = tmp_path / "data"
    write_replica("cifar10", data)
    store = tmp_path / "r.db"
    result = runner.invoke(app, ["run", "--suite", "gvb", *FAST, "--data-root", str(data), "--store", str(store)], env=WIDE)
    text = _text(result)
    assert result.exit_code == 0, result.output
    assert "skipping imagenet: not present" in text and "gaia-bench datasets prepare svhn --download" in text
    assert "gaia-bench datasets prepare imagenet`" in text and "1 present dataset(s), 25 skipped" in text
    with ResultsStore(store) as s:
        records = {r["config"]["dataset"]: r for r in s.query()}
    assert set(records) == {"cifar10"} and records["cifar10"]["status"] == "done"
    assert records["cifar10"]["n_train"] == 5 and records["cifar10"]["n_test"] == 6
    assert records["cifar10"]["skipped_samples"] == 0
    assert records["cifar10"]["data_source"]["kind"] == "local"  # laid out by hand: the official archive named
    assert records["cifar10"]["data_source"]["official_archives"][0]["url"].endswith("/cifar-10-python.tar.gz")

    empty = runner.invoke(app, ["run", "--suite", "gvb", *FAST, "--data-root", str(tmp_path / "none"),
                                "--store", str(store)], env=WIDE)
    assert empty.exit_code == 1 and "no dataset of suite 'gvb' is present" in _text(empty)


def test_bad_sample_fail_or_skip(tmp_path, monkeypatch):
    monkeypatch.setenv("GAIA_BENCH_HOME", str(tmp_path / "home"))
    data = tmp_path / "data"
    write_replica("pets", data)
    victim = sorted((data / "oxford-iiit-pet" / "images").glob("Abyssinian_trainval*.jpg"))[0]
    victim.write_bytes(victim.read_bytes()[:50])  # truncated JPEG
    base = ["run", "--dataset", "pets", *FAST, "--data-root", str(data)]
    failed = runner.invoke(app, [*base, "--store", str(tmp_path / "a.db")], env=WIDE)
    text = _text(failed)
    assert failed.exit_code == 1 and f"cannot read image {victim}" in text and "--on-bad-sample skip" in text
    skipped = runner.invoke(app, [*base, "--store", str(tmp_path / "b.db"), "--on-bad-sample", "skip"], env=WIDE)
    text = _text(skipped)
    assert skipped.exit_code == 0, skipped.output
    assert f"skipping unreadable image {victim}" in text
    with ResultsStore(tmp_path / "b.db") as s:
        record = s.query()[0]
    assert record["status"] == "done" and record["skipped_samples"] == 1
    assert record["skipped"][0]["path"] == str(victim) and record["skipped"][0]["split"] == "trainval"
    assert record["n_train"] == 4  # 24 Abyssinians left: 10% keeps 2, then 1 + 1
    scans = list((tmp_path / "home" / "features" / "unreadable").glob("*.json"))  # remembered for the next run
    assert len(scans) == 2 and sorted(len(json.loads(p.read_text())) for p in scans) == [0, 1]  # trainval, test
    bad = runner.invoke(app, [*base, "--on-bad-sample", "ignore"], env=WIDE)
    assert bad.exit_code == 2 and "use fail or skip" in _text(bad)


class _Payload:
    """What a hostile ``batches.meta`` carries: a callable the unpickler would run while loading."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_pickle_payload_in_a_cifar_file_is_refused_not_run(tmp_path):
    """Datasets are downloaded from third parties: reading CIFAR's pickles must never run code.
    The hostile file is named, with what it asked for; nothing ran; the official files still read."""
    import pickle

    data = tmp_path / "data"
    write_replica("cifar10", data)
    meta = data / "cifar-10-batches-py" / "batches.meta"
    marker = tmp_path / "pwned"
    meta.write_bytes(pickle.dumps({"label_names": ["a"], "x": _Payload(marker)}, protocol=2))
    for args in (["datasets", "verify", "cifar10"], ["datasets", "stats", "cifar10"]):
        result = CliRunner().invoke(app, [*args, "--data-root", str(data)], env={"COLUMNS": "300"})
        text = _text(result)
        assert result.exit_code != 0 and "Traceback" not in text
        assert f"refusing {meta}" in text and "which no official CIFAR batch contains: refused" in text
    assert not marker.exists()
