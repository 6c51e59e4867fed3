"""`--adapt zero-shot`: curated class names and templates for every classification dataset, the
class-embedding and scoring rule on a hand-made text tower, the errors, and a run end to end with the
``clip`` init pretrained on the mini pool (tiny: the pretraining tests' hyper-parameters, so a
session that ran them reuses the checkpoint). open_clip / transformers text towers:
tests/test_clip_transformers_backbones.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from gaia_bench.cli import app
from gaia_bench.errors import DataError, UsageError
from gaia_bench.manager import get_registries
from gaia_bench.plugins.adaptations.lib.zero_shot_prompts import class_prompts, curated_datasets, table
from gaia_bench.plugins.adaptations.zero_shot import class_embeddings, scores
from gaia_bench.plugins.backbones.lib.text_tower import TextTower
from gaia_bench.store import ResultsStore
from tests.helpers import require_debian_sources

TINY_HP = ["--init-hp", "steps=12,batch_size=32,image_size=16", "--init-hp", "lr=0.003"]  # test_pretrain's TINY


def _classification_sets() -> dict:
    registries = get_registries()
    names = {n for suite in ("gvb", "mini") for n in registries.suites.get(suite).datasets}
    return {n: registries.datasets.get(n) for n in sorted(names) if registries.datasets.get(n).task == "classification"}


def test_every_classification_dataset_has_curated_names_and_templates():
    from gaia_bench.tasks.datasets import digits, fashion_mnist, lfw_faces, textures
    from gaia_bench.tasks.datasets.lib.gvb_classification_records import FER_CLASSES

    sets = _classification_sets()
    assert len(sets) == 24 and set(sets) == set(curated_datasets())
    readers = {"digits-lt": digits.CLASSES, "fashion-mnist-lt": sorted(fashion_mnist.CLASSES),
               "lfw-faces": lfw_faces.CLASSES, "textures-lt": sorted(textures.SOURCES)}
    for name, spec in sets.items():
        classes = readers.get(name, [str(c) for c in range(spec.num_classes)])
        prompts = class_prompts(name, classes)
        assert len(prompts.names) == spec.num_classes, name
        assert all(n and all(isinstance(s, str) and s.strip() for s in n) for n in prompts.names), name
        assert prompts.templates and all(t.count("{}") == 1 for t in prompts.templates), name
        shared = 2 if name == "imagenet" else 0  # OpenAI's names: 'missile' and 'sunglasses' twice each, kept as CLIP's
        assert len({tuple(n) for n in prompts.names}) == spec.num_classes - shared, f"{name}: two classes share a name"
    assert len(class_prompts("imagenet", [""] * 1000).templates) == 80  # CLIP's ImageNet ensemble
    # Code-named classes follow the reader's ids: FER2013's CSV order, PCam's normal / tumor, SVHN's digits.
    fer = class_prompts("fer2013", FER_CLASSES).names
    assert [n[0][:4] for n in fer] == [c.lower()[:4] for c in FER_CLASSES] and "smiling" in fer[3]
    assert "tumor" in class_prompts("pcam", ["normal", "tumor"]).names[1][0]
    assert class_prompts("svhn", [str(d) for d in range(10)]).names[0] == ["zero"]
    assert class_prompts("fashion-mnist-lt", readers["fashion-mnist-lt"]).names[0] == ["ankle boot"]
    assert "source" in table()["datasets"]["cars"] and "CLIP" in table()["datasets"]["cars"]["source"]

    # the reader's own names on request; what does not fit is one line naming the fix
    own = class_prompts("my-set", ["aquarium_fish", "/b/bakery/shop"], class_names="dataset", templates="photo")
    assert own.prompts(0) == ["a photo of a aquarium fish."] and own.names[1] == ["shop"]
    for call, needle in ((lambda: class_prompts("my-set", ["a"]), "class_names=dataset"),
                         (lambda: class_prompts("cifar10", ["a", "b"]), "has 2 classes, its curated names are for 10"),
                         (lambda: class_prompts("lfw-faces", ["cat"]), "cat have no curated name"),
                         (lambda: class_prompts("cifar10", ["a"] * 10, templates="many"), "dataset, generic, photo")):
        with pytest.raises((UsageError, DataError), match=needle):
            call()


def test_class_embeddings_average_normalised_prompts_and_scores_are_scaled_cosines():
    vectors = {"a photo of a cat.": [3.0, 0.0], "a cat drawing": [0.0, 1.0], "a photo of a dog.": [0.0, -2.0],
               "a dog drawing": [0.0, -5.0]}
    prompts = class_prompts("x", ["cat", "dog"], class_names="dataset", templates="photo")
    prompts = type(prompts)([["cat"], ["dog"]], ["a photo of a {}.", "a {} drawing"], "hand-made")
    seen = []

    def encode(texts, device):
        seen.append(len(texts))
        return torch.tensor([vectors[t] for t in texts])

    tower = TextTower(encode=encode, project_image=lambda x: 2 * x, logit_scale=10.0, logit_bias=-1.0, describe="fake")
    classes = class_embeddings(tower, prompts)
    assert torch.allclose(classes, torch.tensor([[2 ** -0.5, 2 ** -0.5], [0.0, -1.0]]), atol=1e-6)
    features = np.array([[1.0, 1.0], [0.0, -3.0], [5.0, 0.0]], dtype=np.float32)
    logits = scores(features, tower, classes)
    assert logits.dtype == np.float32 and logits.shape == (3, 2)
    assert np.allclose(logits[:, 0], [10 * 1.0 - 1, -10 * 2 ** -0.5 - 1, 10 * 2 ** -0.5 - 1], atol=1e-5)
    assert np.allclose(logits[:, 1], [-10 * 2 ** -0.5 - 1, 10 - 1, -1], atol=1e-5)
    assert seen == [4]  # both classes' prompts in one batch


def test_zero_shot_run_with_the_pool_pretrained_clip_init_and_its_errors(tmp_path):
    require_debian_sources()
    from gaia_bench.plugins.reporters.lib.leaderboard import data_efficiency
    from gaia_bench.plugins.reporters.lib.tables import efficiency_grid

    store = tmp_path / "r.db"
    base = ["run", "--model", "test_resnet", "--dataset", "lfw-faces", "--image-size", "16", "--store", str(store)]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = CliRunner().invoke(app, base + ["--init", "clip", "--adapt", "zero-shot,knn", "--shots", "10%",
                                                 *TINY_HP], env={"COLUMNS": "200"})
    finally:
        torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output
    with ResultsStore(store) as results:
        records = {r["config"]["adaptation"]: r for r in results.query()}
    zero = records["zero-shot"]
    assert zero["status"] == "done" and zero["config"]["shots"] == "0%" and zero["n_train"] == 0
    assert records["knn"]["config"]["shots"] == "10%"  # the other adaptation keeps --shots
    details = zero["details"]["zero_shot"]
    assert details["text_tower"].startswith("clip pretraining on mini-upstream") and details["templates"] == 3
    assert "face" in details["unknown_words"]  # the pool's captions never say "face": the record shows it
    assert zero["predictions"]["items"] == 60 and "top1" in zero["interval"]["metrics"]  # scores kept: intervals, rescoring
    grid = efficiency_grid(data_efficiency(records.values()))
    assert [c.label for c in grid.columns][-2:] == ["0%", "10%"] and any("zero-shot" in n for n in grid.notes)

    for args, needle in ((["--init", "random", "--adapt", "zero-shot"], "init 'random' has none"),
                         (["--init", "clip", "--adapt", "linear-probe", "--shots", "0%"],
                          "--shots 0% gives adaptation 'linear-probe' no training image")):
        failed = CliRunner().invoke(app, base + args, env={"COLUMNS": "200"})
        assert failed.exit_code == 2 and needle in " ".join(failed.stderr.split()), failed.output
    assert "--init clip" in " ".join(CliRunner().invoke(app, base + ["--init", "imagenet", "--adapt", "zero-shot"],
                                                        env={"COLUMNS": "200"}).stderr.split())
