"""Weights on demand, against a local server started here (never the internet): a hub-shaped
endpoint (HEAD / GET of ``{endpoint}/{repo}/resolve/main/{file}`` with the headers
huggingface_hub reads) and plain URLs as torch.hub downloads them. A good download lands in the
standard cache with its sha256 noted; a truncated one and a hash mismatch leave nothing there and
say so in one line naming the file and the fix; offline, nothing is requested at all."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import threading

import pytest
from typer.testing import CliRunner

from gaia_bench.api import InitContext, Progress
from gaia_bench.cli import app
from gaia_bench.errors import DataError, MissingWeightsError
from gaia_bench.manager import get_registries

COMMIT = "c0ffee" * 6 + "c0ff"


class Hub(http.server.BaseHTTPRequestHandler):
    """Serves ``files``: path -> (bytes advertised by HEAD, bytes sent by GET); others get the hub's 404."""

    files: dict[str, tuple[bytes, bytes]] = {}
    requests: list[str] = []

    def _answer(self, body: bool) -> None:
        type(self).requests.append(f"{self.command} {self.path}")
        path = self.path.split("?")[0]
        if path not in self.files:
            self.send_response(404)
            self.send_header("X-Error-Code", "EntryNotFound")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        advertised, sent = self.files[path]
        self.send_response(200)
        if path.endswith(".json"):  # a plain git file's ETag is its git blob sha1, an LFS file's its sha256
            etag = hashlib.sha1(b"blob %d\0" % len(advertised) + advertised).hexdigest()
        else:
            etag = hashlib.sha256(advertised).hexdigest()
        self.send_header("ETag", f'"{etag}"')
        self.send_header("X-Repo-Commit", COMMIT)
        self.send_header("Content-Length", str(len(advertised) if not body else len(sent)))
        self.end_headers()
        if body:
            self.wfile.write(sent)

    def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
        self._answer(body=False)

    def do_GET(self) -> None:  # noqa: N802
        self._answer(body=True)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def weights_bytes() -> bytes:
    """timm's test_resnet state dict as a safetensors file: a real, tiny published-weights file."""
    import timm
    import torch
    from safetensors.torch import save

    torch.manual_seed(7)
    model = timm.create_model("test_resnet", num_classes=1000)
    return save({k: v.contiguous() for k, v in model.state_dict().items()})


@pytest.fixture()
def hub(tmp_path, monkeypatch):
    """The local server as the hub (HF_ENDPOINT), downloads allowed for the code under test,
    and empty caches (hub cache, torch.hub's, gaia-bench's home) of this test's own."""
    from huggingface_hub import constants

    Hub.files, Hub.requests = {}, []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hub)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("HF_ENDPOINT", url)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # conftest's 1, lifted for the code under test only
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("GAIA_BENCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("GAIA_BENCH_OFFLINE", raising=False)
    yield url
    server.shutdown()
    server.server_close()


def _serve(repo: str, advertised: bytes, sent: bytes | None = None) -> None:
    Hub.files[f"/{repo}/resolve/main/model.safetensors"] = (advertised, advertised if sent is None else sent)


def _leftovers(tmp_path) -> list[str]:
    """Weight data in the caches: blobs (partial ones too), snapshot entries, torch.hub's files
    (the hub client's lock files and refs hold none)."""
    return sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if (p.is_file() or p.is_symlink())
                  and ({"blobs", "snapshots", "torch"} & set(p.parts) or p.suffix in (".incomplete", ".partial")))


def test_fetch_then_list_then_an_offline_run_uses_the_file(hub, weights_bytes, tmp_path):
    _serve("timm/test_resnet.r160_in1k", weights_bytes)
    runner = CliRunner()
    fetched = runner.invoke(app, ["weights", "fetch", "test_resnet", "--init", "imagenet"], env={"COLUMNS": "300"})
    assert fetched.exit_code == 0, fetched.output
    sha = hashlib.sha256(weights_bytes).hexdigest()
    assert f"sha256 {sha}" in fetched.stdout
    path = next((tmp_path / "hub").rglob("model.safetensors"))
    assert path.read_bytes() == weights_bytes

    listed = runner.invoke(app, ["weights", "list", "--json"])
    (row,) = json.loads(listed.stdout)
    assert row | {"file": ""} == {"model": "timm:test_resnet", "init": "imagenet", "library": "timm", "file": "",
                                  "bytes": len(weights_bytes), "sha256": sha}

    Hub.requests.clear()
    spec, init = get_registries().backbones.get("test_resnet"), get_registries().inits.get("imagenet")
    ctx = InitContext(offline=True)
    assert init.weights_id(spec, ctx) == f"imagenet:test_resnet.r160_in1k:sha256={sha[:16]}"
    assert init.provenance(spec, ctx) == {"weights": {"tag": "test_resnet.r160_in1k", "file": str(path),
                                                      "bytes": len(weights_bytes), "sha256": sha}}
    assert Hub.requests == []


def test_an_init_downloads_missing_weights_with_a_progress_bar_unless_offline(hub, weights_bytes, tmp_path):
    _serve("timm/resnet18.a1_in1k", weights_bytes)
    registries = get_registries()
    init = registries.inits.get("imagenet")
    steps: list[tuple[str, int | None, float]] = []

    def start(description, total):
        steps.append([description, total, 0.0])
        return lambda n: steps[-1].__setitem__(2, steps[-1][2] + n)

    weights_id = init.weights_id(registries.backbones.get("timm:resnet18.a1_in1k"), InitContext(progress=Progress(start=start)))
    assert weights_id.endswith(hashlib.sha256(weights_bytes).hexdigest()[:16])
    assert steps[0][0] == "downloading model.safetensors (MiB)"
    assert steps[0][2] == pytest.approx(len(weights_bytes) / 2**20)

    Hub.requests.clear()
    with pytest.raises(MissingWeightsError) as err:
        init.weights_id(registries.backbones.get("timm:resnet34.a1_in1k"), InitContext(offline=True))
    assert Hub.requests == []
    text = str(err.value)
    assert "downloads are off (--offline)" in text and "gaia-bench weights fetch timm:resnet34.a1_in1k --init imagenet" in text


@pytest.mark.parametrize("damage", ["truncated", "hash mismatch"])
def test_a_bad_download_leaves_nothing_in_the_cache_and_names_file_and_fix(hub, weights_bytes, tmp_path, damage):
    half = len(weights_bytes) // 2
    sent = weights_bytes[:half] if damage == "truncated" else bytes(len(weights_bytes))
    _serve("timm/resnet18.a1_in1k", weights_bytes, sent)
    result = CliRunner().invoke(app, ["run", "--model", "resnet18.a1_in1k", "--init", "imagenet", "--dataset", "lfw-faces",
                                      "--store", str(tmp_path / "r.db")], env={"COLUMNS": "400"})
    assert result.exit_code == 1, result.output
    text = " ".join(result.stderr.split())
    assert text.startswith("error:") and text.count("error:") == 1 and "Traceback" not in text, result.stderr
    assert "model.safetensors of timm/resnet18.a1_in1k" in text and "nothing was kept in the cache" in text
    assert "gaia-bench weights fetch timm:resnet18.a1_in1k --init imagenet" in text
    assert ("cut short: 947" if damage == "truncated" else "sha256") in text
    assert _leftovers(tmp_path) == []


def test_torch_hub_urls_are_checked_against_the_hash_prefix_in_the_name(hub, weights_bytes, tmp_path):
    from gaia_bench.plugins.backbones.lib.weights_download import url_fetch

    name = f"resnet-{hashlib.sha256(weights_bytes).hexdigest()[:8]}.pth"
    Hub.files = {f"/good/{name}": (weights_bytes, weights_bytes), f"/bad/{name}": (weights_bytes, weights_bytes[::-1])}
    with pytest.raises(DataError, match=f"downloading {name} from {hub}/bad/{name} failed: its sha256 does not start with"):
        url_fetch(f"{hub}/bad/{name}", tmp_path / "torch", Progress())
    assert list((tmp_path / "torch").iterdir()) == []
    assert url_fetch(f"{hub}/good/{name}", tmp_path / "torch", Progress()).read_bytes() == weights_bytes


def test_a_transformers_repo_downloads_its_config_with_its_weights(hub, weights_bytes, tmp_path):
    pytest.importorskip("transformers")
    config = json.dumps({"model_type": "dinov2", "hidden_size": 32}).encode()
    Hub.files = {"/facebook/dinov2-small/resolve/main/config.json": (config, config)}
    _serve("facebook/dinov2-small", weights_bytes)
    registries = get_registries()
    weights_id = registries.inits.get("dinov2").weights_id(registries.backbones.get("facebook/dinov2-small"), InitContext())
    assert weights_id.startswith("dinov2:facebook/dinov2-small:sha256=")
    snapshot = tmp_path / "hub" / "models--facebook--dinov2-small" / "snapshots" / COMMIT
    assert sorted(p.name for p in snapshot.iterdir()) == ["config.json", "model.safetensors"]
    assert "GET /facebook/dinov2-small/resolve/main/preprocessor_config.json" not in Hub.requests  # HEAD said 404


def test_offline_reaches_the_other_commands_that_may_download(hub, tmp_path):
    """`--offline` is one option of every command that may download (here `tsds select`, which plans a
    job as `run` does): nothing is requested, and the variables it sets end with the command."""
    import os

    args = ["tsds", "select", "--model", "timm:resnet34.a1_in1k", "--init", "imagenet", "--dataset", "digits-lt"]
    offline = CliRunner().invoke(app, [*args, "--offline"], env={"COLUMNS": "400"})
    text = " ".join(offline.output.split())
    assert offline.exit_code == 2 and "downloads are off (--offline)" in text and Hub.requests == [], offline.output
    assert "GAIA_BENCH_OFFLINE" not in os.environ and os.environ["HF_HUB_OFFLINE"] == "0"  # the fixture's, restored
    online = CliRunner().invoke(app, args, env={"COLUMNS": "400"})  # without it the hub is asked (and has no file)
    assert online.exit_code != 0 and Hub.requests and "downloads are off" not in online.output, online.output
