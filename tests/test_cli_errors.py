"""Every bad value a user can type gets one clear line naming the fix, exit code 2, no traceback."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from gaia_bench.cli import app
from tests.helpers import cli

BASE = ["run", "--model", "test_resnet", "--shots", "10%"]


@pytest.mark.parametrize("args,needles", [
    (["run", "--model", "resnt50"], ["unknown backbone 'resnt50'", "'resnet50'"]),
    (["run", "--model", "torchvision:resnt18"], ["unknown torchvision backbone 'resnt18'", "'resnet18'"]),
    (["run", "--model", "test_resnet", "--shots", "150%"], ["out of range", "[0%, 100%]"]),
    (["run", "--model", "test_resnet", "--shots", "0"], ["out of range", "(0, 1]"]),
    (["run", "--model", "test_resnet", "--shots", "ten"], ["cannot read --shots 'ten'", "5/class"]),
    (["run", "--model", "test_resnet", "--shots", "0/class"], ["at least 1 sample per class"]),
    (BASE + ["--init", "imagenett"], ["unknown init 'imagenett'", "'imagenet'"]),
    (BASE + ["--adapt", "linear_probe"], ["unknown adaptation 'linear_probe'", "'linear-probe'"]),
    (BASE + ["--dataset", "digits"], ["unknown dataset 'digits'", "'digits-lt'"]),
    (BASE + ["--suite", "minii"], ["unknown suite 'minii'", "'mini'"]),
    (BASE + ["--executor", "slurm"], ["unknown executor 'slurm'", "local"]),
    (BASE + ["--device", "gpu"], ["unknown --device 'gpu'", "cuda:N"]),
    (BASE + ["--device", "cuda"], ["no CUDA device", "--device cpu"]),
    (BASE + ["--batch-size", "0"], ["--batch-size 0 is out of range", "1 or more"]),
    (BASE + ["--workers", "-1"], ["--workers -1 is out of range"]),
    (BASE + ["--seed", "-3"], ["--seed -3 is negative"]),
    (BASE + ["--seed", "0,x"], ["--seed 'x' is not an integer", "--seed 0,1,2"]),
    (BASE + ["--suite", "gvb", "--dataset", "digits-lt"], ["--dataset digits-lt is not in --suite gvb", "drop --suite"]),
    (BASE + ["--image-size", "2"], ["--image-size 2 is out of range"]),
    (BASE + ["--hp", "wd_grid"], ["--hp 'wd_grid' is not KEY=VALUE", "KEY=VALUE"]),
    (BASE + ["--hp", "max_iter=0.5"], ["--hp max_iter=0.5 does not fit its default 1000", "value of type int"]),
    (BASE + ["--hp", "nonexistent=0.1"], ["--hp nonexistent: no planned job has such a hyper-parameter", "wd_grid"]),
    (["run", "--model", "resnet50", "--init", "imagenet", "--shots", "10%"],  # timm's: the default zoo
     ["ImageNet weights 'resnet50.", "model.safetensors", "huggingface", "timm.create_model", "--init random"]),
    (["run", "--model", "torchvision:resnet50", "--init", "imagenet", "--shots", "10%"],
     ["ImageNet weights", "resnet50-", "--init random"]),
    (["run", "--model", "timm:resnet50", "--init", "gaia"], ["GAIA weights 'resnet50.up-e-c'", "up-e/c-r50.pth",
                                                             "gaia-bench pretrain --method gaia --model timm:resnet50"]),
    (BASE + ["--init", "gaia", "--init-hp", "stepz=3"], ["--init-hp stepz: no planned init (gaia)", "steps"]),
    (BASE + ["--init", "random", "--init-hp", "steps=3"], ["--init-hp steps: no planned init (random)", "do not pretrain"]),
    (BASE + ["--init-hp", "steps"], ["--init-hp 'steps' is not KEY=VALUE"]),
    (BASE + ["--init", "gaia", "--upstream", "textures-lt"], ["'textures-lt' is a classification dataset, not an upstream pool",
                                                              "mini-upstream"]),
    (["datasets", "stats", "digitz"], ["unknown dataset 'digitz'", "'digits-lt'"]),
    (["results", "--format", "xml"], ["unknown reporter 'xml'", "markdown"]),
    (["results", "import", "nope.json"], ["no such file: nope.json"]),
])
def test_bad_input_gives_one_clear_error(args, needles, tmp_path):
    result = CliRunner().invoke(app, args + (["--store", str(tmp_path / "r.db")] if args[0] == "run" else []),
                                env={"COLUMNS": "200"})
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    text = " ".join(result.stderr.split())
    assert text.count("error:") == 1
    for needle in needles:
        assert needle in text, text


@pytest.mark.parametrize("args,needle", [
    (["run", "--model", "resnt50"], "did you mean 'resnet50'"),
    (["run", "--model", "timm:resnet50", "--init", "imagenet"], "timm.create_model('resnet50."),
])
def test_real_process_prints_no_traceback(args, needle, tmp_path):
    result = cli(args + ["--store", str(tmp_path / "r.db")])
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert needle in " ".join(result.stderr.split())


def test_import_rejects_a_file_that_is_not_an_export(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"hello": 1}')
    result = cli(["results", "import", str(bad), "--store", str(tmp_path / "r.db")])
    assert result.returncode == 2 and "not a gaia-bench results export" in result.stderr


def test_a_refused_torchvision_checkpoint_is_one_line_naming_the_file(tmp_path, capsys):
    """(#20 §9) A checkpoint carrying code is refused (weights_only) in one line, not torch's dozen."""
    import torch

    from gaia_bench.errors import DataError
    from gaia_bench.manager import get_registries

    class Payload:
        def __reduce__(self):
            return (print, ("the payload ran",))

    path = tmp_path / "resnet18.pth"
    torch.save({"fc.weight": Payload()}, path)
    with pytest.raises(DataError) as refused:
        get_registries().backbones.get("torchvision:resnet18").build(weights=str(path))
    message = refused.value.message
    assert message.startswith(f"refusing {path}: it is not a plain state dict") and "Unsupported global" in message
    assert "\n" not in message and "add_safe_globals" not in message
    assert "the payload ran" not in capsys.readouterr().out
