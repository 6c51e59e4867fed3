"""Class names and prompt templates for zero-shot classification (``zero_shot_prompts.json``).

Many readers name classes by codes (SVHN's digits, GTSRB's ``00012``, Flowers' ids, ImageNet's
wnids, FER2013's label numbers, GV-B's exported lists' ``0..N-1``), and a text tower reads words, so
every classification dataset of the GV-B and mini suites has curated names: OpenAI's (CLIP's
``data/prompts.md``) where they exist, LAION's CLIP_benchmark where CLIP has none or another class
order, curated here for the mini suite. A list of names follows the class ids of the dataset's reader
(the official layout; GV-B's exported lists number classes the same way); a mapping goes from the
reader's class name to a readable one. A class may have synonyms (FER2013's, after CLIP).

Templates (``{}`` is the class name): the dataset's own set (CLIP's per-dataset prompts; 80 for
ImageNet), else a generic set (CLIP's ``a photo of a {}.`` and the 7 templates OpenAI's ImageNet
prompt-engineering notebook selected).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from gaia_bench.errors import DataError, UsageError

PROMPTS_FILE = Path(__file__).with_name("zero_shot_prompts.json")
TEMPLATE_SETS = ("dataset", "generic", "photo")  # the `templates` hyper-parameter's values
NAME_SOURCES = ("curated", "dataset")  # the `class_names` hyper-parameter's values
PHOTO = "a photo of a {}."


@dataclass(frozen=True)
class ClassPrompts:
    """The prompts of every class of one dataset: ``names[c]`` (synonyms) × ``templates``."""

    names: list[list[str]]
    templates: list[str]
    source: str

    def prompts(self, c: int) -> list[str]:
        return [template.format(name) for name in self.names[c] for template in self.templates]


@functools.lru_cache(maxsize=1)
def table() -> dict:
    return json.loads(PROMPTS_FILE.read_text())


def curated_datasets() -> list[str]:
    return sorted(table()["datasets"])


def _readable(name: str) -> str:
    """A reader's own class name as words (``aquarium_fish`` -> ``aquarium fish``, ``/a/abbey`` -> ``abbey``)."""
    return " ".join(name.strip("/").rsplit("/", 1)[-1].replace("_", " ").split())


def _curated_names(dataset: str, classes: Sequence[str]) -> tuple[list, str]:
    entry = table()["datasets"].get(dataset)
    if entry is None:
        raise UsageError(f"zero-shot has no curated class names for dataset '{dataset}'",
                         f"use --hp class_names=dataset (its own class names), or add it to {PROMPTS_FILE.name}")
    declared = entry["classes"]
    if isinstance(declared, dict):
        unknown = [c for c in classes if c not in declared]
        if unknown:
            raise DataError(f"zero-shot: {dataset}'s classes {', '.join(unknown[:5])} have no curated name",
                            f"is the dataset the official one? else use --hp class_names=dataset")
        return [declared[c] for c in classes], entry["source"]
    if len(declared) != len(classes):
        raise DataError(f"zero-shot: {dataset} has {len(classes)} classes, its curated names are for {len(declared)}",
                        "check it with `gaia-bench datasets verify`, or use --hp class_names=dataset")
    return list(declared), entry["source"]


def class_prompts(dataset: str, classes: Sequence[str], class_names: str = "curated",
                  templates: str = "dataset") -> ClassPrompts:
    """The prompts for ``classes`` (the reader's class names, in id order) of ``dataset``:
    curated names (``class_names="curated"``) or the reader's own as words (``"dataset"``), with the
    dataset's template set, the generic one, or ``a photo of a {}.`` alone (``templates``)."""
    if class_names not in NAME_SOURCES:
        raise UsageError(f"--hp class_names={class_names} is not known", f"use one of: {', '.join(NAME_SOURCES)}")
    if templates not in TEMPLATE_SETS:
        raise UsageError(f"--hp templates={templates} is not known", f"use one of: {', '.join(TEMPLATE_SETS)}")
    if class_names == "curated":
        names, source = _curated_names(dataset, classes)
    else:
        names, source = [_readable(c) for c in classes], "the dataset's own class names"
    own = table()["datasets"].get(dataset, {}).get("templates", "generic")
    used = "generic" if templates == "dataset" and own == "generic" else templates
    chosen = {"photo": [PHOTO], "generic": table()["generic_templates"], "dataset": own}[used]
    return ClassPrompts([[n] if isinstance(n, str) else list(n) for n in names], list(chosen),
                        f"names: {source}; templates: {used}")
