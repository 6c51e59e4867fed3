"""The 20 classification datasets of GV-B (OpenGVLab/gv-benchmark) as dataset plugins, each read
from its official on-disk layout under ``<data root>/<torchvision's folder name>`` (so
``--data-root DIR`` works on ``DIR/cifar-10-batches-py/`` and on any tree torchvision made).

* Names and primary metrics are the GV-B leaderboard's (``leaderboards/references/gvb_readme.json``):
  mean per-class accuracy for Pets, Flowers-102, Caltech-101 and FGVC-Aircraft, top-1 elsewhere.
* Splits are the official ones. Where a dataset has none, the split is a documented deterministic
  one (blake2b of the file name per class): EuroSAT and RESISC45 60/20/20 as VTAB, Caltech-101 30
  images per class for training as TFDS / VTAB; SUN397 and DTD use their first official partition.
  GV-B's own lists were never published, so these are GV-B-like.
* A directory holding GV-B's exported ``train_meta.list`` / ``test_meta.list`` (``path label``
  lines; `gaia-bench datasets prepare NAME --gvb-lists DIR` links one in) is read as-is instead.
* ``download`` (only `gaia-bench datasets prepare NAME --download`, never a run) fetches the public
  archives torchvision uses, checks their md5 and extracts them safely; datasets behind a login or
  a licence print the exact manual steps and the expected tree instead.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from gaia_bench import hookimpl
from gaia_bench.api import DatasetSpec, Samples
from gaia_bench.errors import DataError
from gaia_bench.tasks.datasets.lib import gvb_classification_files as files
from gaia_bench.tasks.datasets.lib import gvb_classification_records as records
from gaia_bench.tasks.datasets.lib import gvb_video_frames as frames
from gaia_bench.tasks.datasets.lib.data_source import downloaded

PLUGIN_ORDER = 850

GVB_LISTS = ("train_meta.list", "test_meta.list")


@dataclass(frozen=True)
class Archive:
    """A public archive: extracted into the dataset directory (``into="."``), or holding the
    dataset directory itself as its top folder (``into=".."``, as torchvision extracts into root)."""

    url: str
    md5: str | None
    into: str = "."
    extract: bool = True  # False: the file itself is part of the layout (SVHN's .mat files)
    mirrors: tuple[str, ...] = ()  # public copies of the same file, tried after ``url`` (checksum checked)


@dataclass(frozen=True)
class GvbSet:
    name: str
    subdir: str
    num_classes: int
    description: str
    read: Callable[[Path, str, str], Samples]  # (dataset dir, split, fix) -> samples
    splits: dict[str, int]
    tree: str  # the expected layout, for messages
    required: tuple[str, ...]
    train_split: str = "train"
    test_split: str = "test"
    metric: str = "top1"
    checksums: dict[str, str] = field(default_factory=dict)  # relative path -> official md5
    archives: tuple[Archive, ...] = ()
    manual: str = ""  # steps, where no public download exists
    extras_under: tuple[str, ...] = ()  # folders whose images must all belong to a split
    after_extract: Callable[[Path], None] | None = None
    extra_checks: Callable[[Path, str], list[str]] | None = None

    # ------------------------------------------------------------------ messages
    @property
    def how(self) -> str:
        if self.archives:
            return f"run `gaia-bench datasets prepare {self.name} --download`"
        return f"see `gaia-bench datasets prepare {self.name}` for the manual steps"

    def hint(self) -> str:
        if self.archives:
            head = (f"public download: `gaia-bench datasets prepare {self.name} --download` fetches "
                    + ", ".join(a.url for a in self.archives) + " (md5-checked), or fetch them by hand and "
                    "extract them as torchvision does.")
        else:
            head = self.manual
        return (f"{head}\nExpected tree under <data root>/{self.subdir}/:\n{self.tree}\n"
                f"Or use GV-B's own exported lists: `gaia-bench datasets prepare {self.name} --gvb-lists DIR` "
                f"(DIR holds train_meta.list, test_meta.list and the images they name).")

    # ------------------------------------------------------------------ reading
    def gvb_lists(self, root: Path) -> bool:
        return all((root / n).exists() for n in GVB_LISTS)

    def load(self, root: Path, split: str) -> Samples:
        if split not in self.splits and split not in (self.train_split, self.test_split):
            raise DataError(f"{self.name} has no split {split!r}", f"its splits: {', '.join(self.splits)}")
        if self.gvb_lists(root):
            from gaia_bench.tasks.datasets.lib.meta_list import read_meta_list

            list_name = {self.train_split: "train", self.test_split: "test"}.get(split, split)
            return read_meta_list(root, f"{list_name}_meta.list", [str(c) for c in range(self.num_classes)])
        return self.read(root, split, self.how)

    # ------------------------------------------------------------------ checking
    def verify(self, root: Path) -> list[str]:
        """One line per problem, each with its fix: missing or extra files, checksums that differ
        from the official ones, wrong split sizes, unreadable images. Never stops at the first."""
        from gaia_bench.tasks.datasets.lib.downloads import checksum_problem

        if not root.exists():
            return [f"{root} does not exist: {self.how}"]
        problems: list[str] = []
        gvb = self.gvb_lists(root)
        if not gvb:
            problems += [f"missing {root / rel}: {self.how}" for rel in self.required if not (root / rel).exists()]
            for rel, md5 in self.checksums.items():
                if (line := checksum_problem(root / rel, md5)) is not None:
                    problems.append(f"{line}: it differs from the official release (a run still reads it); "
                                    f"re-fetch it with `gaia-bench datasets prepare {self.name} --download --force`")
        referenced: set[Path] = set()
        all_samples = []
        split_names = [s for s in self.splits or (self.train_split, self.test_split)
                       if not gvb or s in (self.train_split, self.test_split)]
        for split in split_names:
            try:
                samples = self.load(root, split)
            except DataError as exc:
                problems.append(f"cannot read split {split}: {exc}")
                continue
            if not gvb and len(samples.classes) != self.num_classes:
                problems.append(f"{split} split has {len(samples.classes)} classes, {self.name} has "
                                f"{self.num_classes}: not the official release; {self.how}")
            if not gvb and split in self.splits and len(samples) != self.splits[split]:
                problems.append(f"{split} split has {len(samples)} images, expected {self.splits[split]}: "
                                f"the copy is incomplete or not the official release; {self.how}")
            all_samples += samples.samples
            referenced.update(s.path for s in samples.samples if s.decode is None)
        problems += _unreadable_lines(all_samples, self.name)
        for folder in self.extras_under if not gvb else ():
            base = root / folder
            if base.is_dir():
                for path in sorted(p for p in base.rglob("*") if p.is_file() and p.suffix.lower() in files.IMAGE_SUFFIXES):
                    if path not in referenced:
                        problems.append(f"unexpected file {path} (in no split of {self.name}): remove it, "
                                        "or restore the official archive's contents")
        if self.extra_checks is not None and not gvb:
            problems += self.extra_checks(root, self.how)
        return problems

    # ------------------------------------------------------------------ downloading
    def download(self, root: Path) -> None:
        """Fetch the public archives (md5-checked), extract them inside ``root`` only, lay out."""
        import shutil

        from gaia_bench.console import notice
        from gaia_bench.tasks.datasets.lib.downloads import fetch_from_sources, record_source, safe_extract

        if not self.archives:
            raise DataError(f"{self.name} has no public download", self.hint())
        if self._laid_out(root):
            notice(f"{self.name}: already laid out at {root} (--force fetches it again)")
            return
        staging = root / ".downloads"
        for archive in self.archives:
            name = archive.url.rstrip("/").rsplit("/", 1)[-1]
            with _fetch_progress(name) as on_progress:
                path, source = fetch_from_sources(archive.url, staging / name, archive.md5, archive.mirrors, on_progress)
            record_source(root, path, source, archive.md5)
            if not archive.extract:
                os.replace(path, root / name)
                continue
            if archive.into == ".":
                safe_extract(path, root)
            else:
                unpacked = staging / "unpacked"
                tops = safe_extract(path, unpacked)
                top = next((t for t in tops if t.name == self.subdir), None)
                if top is None:
                    raise DataError(f"{archive.url} has no top folder {self.subdir}/ (it has: "
                                    f"{', '.join(t.name for t in tops)})", "the archive changed upstream; fetch it by hand")
                for child in top.iterdir():
                    if (root / child.name).exists():
                        shutil.rmtree(root / child.name) if (root / child.name).is_dir() else (root / child.name).unlink()
                    os.replace(child, root / child.name)
                shutil.rmtree(unpacked)
            path.unlink()
        shutil.rmtree(staging, ignore_errors=True)
        if self.after_extract is not None:
            self.after_extract(root)
        missing = [rel for rel in self.required if not (root / rel).exists()]
        if missing:
            raise DataError(f"after extracting, {root} still lacks {', '.join(missing)}", self.hint())
        self.read(root, self.train_split, self.how)  # the layout reads: or say why not

    def _laid_out(self, root: Path) -> bool:
        if not all((root / rel).exists() for rel in self.required):
            return False
        try:
            self.read(root, self.train_split, self.how)
        except DataError:
            return False
        return True

    def spec(self) -> DatasetSpec:
        return DatasetSpec(
            name=self.name, task="classification", description=self.description, load=self.load,
            verify=self.verify, prepare=None, prepare_hint=self.hint(), splits=dict(self.splits),
            num_classes=self.num_classes, train_split=self.train_split, test_split=self.test_split,
            primary_metric=self.metric, version="1", subdir=self.subdir,
            download=self.download if self.archives else None,
            provenance=downloaded([(a.url, a.md5) for a in self.archives], GVB_LISTS),
        )


class _fetch_progress:
    """A rich download bar (bytes) for one file."""

    def __init__(self, name: str) -> None:
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

        from gaia_bench.console import err_console

        self.progress = Progress(TextColumn(f"fetching {name}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                                 console=err_console, transient=True)
        self.task = self.progress.add_task(name, total=None)

    def __enter__(self) -> Callable[[int, int | None], None]:
        self.progress.__enter__()
        return lambda done, total: self.progress.update(self.task, completed=done, total=total)

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)


def _unreadable_lines(samples: list, name: str) -> list[str]:
    """One line per sample whose image is missing or does not decode (decoded in threads: PIL
    releases the GIL while decoding)."""
    from gaia_bench.imagedata import read_error, where

    unique = list({s.key if s.decode is not None else s.path: s for s in samples}.values())
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        errors = list(pool.map(read_error, unique, chunksize=64))
    lines = []
    for sample, error in zip(unique, errors):
        if not error:
            continue
        if sample.decode is None and not sample.path.exists():
            lines.append(f"missing file {sample.path} (listed in a split of {name}): restore it from the official archive")
        else:
            lines.append(f"unreadable image {where(sample)}: {error}: replace it from the official archive, "
                         "or leave such images out with `gaia-bench run --on-bad-sample skip`")
    return lines


def _kinetics_checks(root: Path, fix: str) -> list[str]:
    lines = []
    for split in ("train", "val"):
        try:
            missing = frames.kinetics_missing(root, split, fix)
        except DataError:
            continue  # already reported by the split's load
        if missing:
            lines.append(f"{missing} clip(s) of annotations/{frames.KINETICS_CSV[split]} have no frames under "
                         f"rawframes/{split}/ (gone from YouTube, or not extracted yet): runs leave them out; "
                         "extract the frames of the clips you have (see `gaia-bench datasets prepare kinetics700`)")
    return lines


def _caltech_inner(root: Path) -> None:
    """caltech-101.zip holds caltech-101/101_ObjectCategories.tar.gz (+ Annotations.tar): unpack those."""
    import shutil

    from gaia_bench.tasks.datasets.lib.downloads import safe_extract

    inner = root / "caltech-101"
    if inner.is_dir():
        for archive in sorted(inner.iterdir()):
            if archive.name.endswith((".tar.gz", ".tgz", ".tar")):
                safe_extract(archive, root)
        shutil.rmtree(inner)


def _cifar_sets() -> list[GvbSet]:
    c10_train = [f"data_batch_{i}" for i in range(1, 6)]
    # The official md5s (torchvision.datasets.CIFAR10/100 list the same ones).
    c10_md5 = {"data_batch_1": "c99cafc152244af753f735de768cd75f", "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
               "data_batch_3": "54ebc095f3ab1f0389bbae665268c751", "data_batch_4": "634d18415352ddfa80567beed471001a",
               "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb", "test_batch": "40351d587109b95175f43aff81a1287e",
               "batches.meta": "5ff9c542aee3614f3951f8cda6e48888"}
    c100_md5 = {"train": "16019d7e3df5f24257cddd939b257f8d", "test": "f0ef6b0ae62326f3e7ffdfab6717acfc",
                "meta": "7973b15100ade9c7d40fb424638fde48"}

    def read10(root, split, fix):
        return records.read_cifar(root, c10_train if split == "train" else ["test_batch"], "labels", "batches.meta",
                                  "label_names", fix)

    def read100(root, split, fix):
        return records.read_cifar(root, [split], "fine_labels", "meta", "fine_label_names", fix)

    return [
        GvbSet("cifar10", "cifar-10-batches-py", 10, "CIFAR-10: 32×32 objects, python pickles", read10,
               {"train": 50000, "test": 10000}, "  data_batch_1 … data_batch_5, test_batch, batches.meta",
               tuple(c10_md5), checksums=c10_md5,
               archives=(Archive("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                                 "c58f30108f718f92721af3b95e74349a", ".."),)),
        GvbSet("cifar100", "cifar-100-python", 100, "CIFAR-100 (fine labels): 32×32 objects, python pickles", read100,
               {"train": 50000, "test": 10000}, "  train, test, meta", tuple(c100_md5), checksums=c100_md5,
               archives=(Archive("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                                 "eb9058c3a382ffc7106e4002c42a8d85", ".."),)),
    ]


def gvb_sets() -> list[GvbSet]:
    svhn_md5 = {"train_32x32.mat": "e26dedcc434d2e4c54c9b2d4a06d8373", "test_32x32.mat": "eb5a983be6a315427106f1b164d9cef3",
                "extra_32x32.mat": "a93ce644f1a588dc4d68dda5feec44a7"}
    pcam = [f"camelyonpatch_level_2_split_{p}_{xy}.h5" for p in ("train", "valid", "test") for xy in "xy"]
    return [
        *_cifar_sets(),
        GvbSet("food101", "food-101", 101, "Food-101: 101 dishes, noisy training labels", files.read_food101,
               {"train": 75750, "test": 25250}, "  images/<class>/<id>.jpg, meta/{train,test}.json, meta/classes.txt",
               ("meta/train.json", "meta/test.json", "meta/classes.txt", "images"), extras_under=("images",),
               archives=(Archive("http://data.vision.ee.ethz.ch/cvl/food-101.tar.gz", "85eeb15f3717b99a5da872d97d918f87", ".."),)),
        GvbSet("pets", "oxford-iiit-pet", 37, "Oxford-IIIT Pets: 37 cat and dog breeds", files.read_pets,
               {"trainval": 3680, "test": 3669}, "  images/<Breed>_<n>.jpg, annotations/{trainval.txt,test.txt}",
               ("images", "annotations/trainval.txt", "annotations/test.txt"), train_split="trainval",
               metric="mean_per_class_acc", extras_under=("images",),
               archives=(Archive("https://www.robots.ox.ac.uk/~vgg/data/pets/data/images.tar.gz", "5c4f3ee8e5d25df40f4fd59a7f44e54c"),
                         Archive("https://www.robots.ox.ac.uk/~vgg/data/pets/data/annotations.tar.gz", "95a8c909bbe2e81eed6a22bccdf3f68f"))),
        GvbSet("flowers", "flowers-102", 102, "Oxford Flowers-102", files.read_flowers,
               {"train": 1020, "val": 1020, "test": 6149}, "  jpg/image_XXXXX.jpg, imagelabels.mat, setid.mat",
               ("jpg", "imagelabels.mat", "setid.mat"), metric="mean_per_class_acc", extras_under=("jpg",),
               checksums={"imagelabels.mat": "e0620be6f572b9609742df49c70aed4d", "setid.mat": "a5357ecc9cb78c4bef273ce3793fc85c"},
               archives=(Archive("https://www.robots.ox.ac.uk/~vgg/data/flowers/102/102flowers.tgz", "52808999861908f626f3c1f4e79d11fa"),
                         Archive("https://www.robots.ox.ac.uk/~vgg/data/flowers/102/imagelabels.mat", "e0620be6f572b9609742df49c70aed4d", extract=False),
                         Archive("https://www.robots.ox.ac.uk/~vgg/data/flowers/102/setid.mat", "a5357ecc9cb78c4bef273ce3793fc85c", extract=False))),
        GvbSet("sun397", "SUN397", 397, "SUN397 scenes, official partition 1 (50 + 50 images per class)", files.read_sun397,
               {"train": 19850, "test": 19850},
               "  ClassName.txt, <letter>/<class>[/<sub>]/sun_*.jpg, Partitions/{Training_01,Testing_01}.txt",
               ("ClassName.txt",),
               archives=(Archive("http://vision.princeton.edu/projects/2010/SUN/SUN397.tar.gz", "8ca2778205c41d23104230ba66911c7a", ".."),
                         Archive("https://vision.princeton.edu/projects/2010/SUN/download/Partitions.zip", None, "."))),
        GvbSet("cars", "stanford_cars", 196, "Stanford Cars: 196 models", files.read_cars,
               {"train": 8144, "test": 8041},
               "  cars_train/*.jpg, cars_test/*.jpg, devkit/{cars_train_annos.mat,cars_meta.mat}, cars_test_annos_withlabels.mat",
               ("cars_train", "cars_test", "devkit/cars_train_annos.mat", "devkit/cars_meta.mat", "cars_test_annos_withlabels.mat"),
               extras_under=("cars_train", "cars_test"),
               manual=("Stanford Cars has no working official download (ai.stanford.edu took it down; torchvision's "
                       "download does nothing). Get cars_train.tgz, cars_test.tgz, car_devkit.tgz and "
                       "cars_test_annos_withlabels.mat from a mirror you trust (e.g. the Kaggle copy "
                       "'jessicali9530/stanford-cars-dataset' plus the devkit), then extract them into "
                       "<data root>/stanford_cars/ so the tree below exists.")),
        GvbSet("dtd", "dtd", 47, "Describable Textures, official partition 1", files.read_dtd,
               {"train": 1880, "val": 1880, "test": 1880}, "  dtd/images/<class>/*.jpg, dtd/labels/{train,val,test}1.txt",
               ("dtd/images", "dtd/labels/train1.txt", "dtd/labels/test1.txt"), extras_under=("dtd/images",),
               archives=(Archive("https://www.robots.ox.ac.uk/~vgg/data/dtd/download/dtd-r1.0.1.tar.gz", "fff73e5086ae6bdbea199a49dfb8a4c1"),)),
        GvbSet("caltech101", "caltech101", 102, "Caltech-101 with BACKGROUND_Google (102 classes, as GV-B); "
               "30 images per class for training", files.read_caltech101, {"train": 3060, "test": 6084},
               "  101_ObjectCategories/<class>/image_XXXX.jpg (102 folders, BACKGROUND_Google included)",
               ("101_ObjectCategories",), metric="mean_per_class_acc", after_extract=_caltech_inner,
               archives=(Archive("https://data.caltech.edu/records/mzrjq-6wc02/files/caltech-101.zip", "3138e1922a9193bfa496528edbbc45d0"),)),
        GvbSet("aircraft", "fgvc-aircraft-2013b", 100, "FGVC-Aircraft: 100 variants", files.read_aircraft,
               {"train": 3334, "val": 3333, "test": 3333},
               "  data/images/<id>.jpg, data/images_variant_{train,val,trainval,test}.txt, data/variants.txt",
               ("data/images", "data/variants.txt", "data/images_variant_train.txt", "data/images_variant_test.txt"),
               metric="mean_per_class_acc", extras_under=("data/images",),
               archives=(Archive("https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/archives/fgvc-aircraft-2013b.tar.gz", None, ".."),)),
        GvbSet("svhn", "svhn", 10, "SVHN cropped digits (32×32)", records.read_svhn,
               {"train": 73257, "test": 26032}, "  train_32x32.mat, test_32x32.mat (extra_32x32.mat optional)",
               ("train_32x32.mat", "test_32x32.mat"), checksums={k: v for k, v in svhn_md5.items() if k != "extra_32x32.mat"},
               archives=tuple(Archive(f"http://ufldl.stanford.edu/housenumbers/{k}", v, extract=False)
                              for k, v in svhn_md5.items() if k != "extra_32x32.mat")),
        GvbSet("eurosat", "eurosat", 10, "EuroSAT RGB (64×64 Sentinel-2); VTAB-like 60/20/20 split", files.read_eurosat,
               {"train": 16200, "val": 5400, "test": 5400}, "  2750/<Class>/<Class>_<n>.jpg", ("2750",),
               archives=(Archive("https://huggingface.co/datasets/torchgeo/eurosat/resolve/c877bcd43f099cd0196738f714544e355477f3fd/EuroSAT.zip",
                                 "c8fa014336c82ac7804f0398fcb19387"),)),
        GvbSet("resisc45", "NWPU-RESISC45", 45, "NWPU-RESISC45 remote-sensing scenes; VTAB-like 60/20/20 split",
               files.read_resisc45, {"train": 18900, "val": 6300, "test": 6300}, "  <class>/<class>_NNN.jpg (45 folders × 700)",
               (), manual=("RESISC45 is distributed only through the authors' OneDrive link (see "
                           "https://www.tensorflow.org/datasets/catalog/resisc45): download NWPU-RESISC45.rar, "
                           "extract it (e.g. `unrar x NWPU-RESISC45.rar <data root>/`) so that "
                           "<data root>/NWPU-RESISC45/<class>/ holds the images.")),
        GvbSet("retinopathy", "diabetic-retinopathy-detection", 5,
               "Kaggle EyePACS diabetic retinopathy grades 0-4 (TFDS splits; raw JPEGs, not GV-B's btgraham-300)",
               files.read_retinopathy, {"train": 35126, "val": 10906, "test": 42670},
               "  train/<image>.jpeg, trainLabels.csv, test/<image>.jpeg, retinopathy_solution.csv",
               ("train", "test", "trainLabels.csv", "retinopathy_solution.csv"), extras_under=("train", "test"),
               manual=("Needs a Kaggle account and the competition rules accepted: "
                       "`kaggle competitions download -c diabetic-retinopathy-detection` (88 GB), join the split "
                       "archives (`cat train.zip.* > train.zip`, same for test), unzip train.zip, test.zip and "
                       "trainLabels.csv.zip into <data root>/diabetic-retinopathy-detection/, and put the "
                       "released test labels retinopathy_solution.csv (Kaggle, same competition) beside them.")),
        GvbSet("fer2013", "fer2013", 7, "FER2013 48×48 faces, 7 emotions (val = PublicTest, test = PrivateTest)",
               records.read_fer2013, {"train": 28709, "val": 3589, "test": 3589},
               "  fer2013.csv (emotion,pixels,Usage) or icml_face_data.csv", (),
               checksums={"fer2013.csv": "f8428a1edbd21e88f42c73edd2a14f95"},
               manual=("Needs a Kaggle account: `kaggle competitions download -c "
                       "challenges-in-representation-learning-facial-expression-recognition-challenge`, unzip it and "
                       "put fer2013.csv (from fer2013.tar.gz) or icml_face_data.csv into <data root>/fer2013/ "
                       "(train.csv/test.csv alone carry no test labels).")),
        GvbSet("ucf101", "ucf101", 101, "UCF101 split 1 as frames (each clip's middle frame)", frames.read_ucf101,
               {"train": 9537, "test": 3783},
               "  ucfTrainTestlist/{classInd,trainlist01,testlist01}.txt, rawframes/<Class>/<v_Class_gXX_cXX>/img_00001.jpg …",
               ("ucfTrainTestlist/classInd.txt", "ucfTrainTestlist/trainlist01.txt", "ucfTrainTestlist/testlist01.txt",
                "rawframes"),
               manual=("Download UCF101.rar and UCF101TrainTestSplits-RecognitionTask.zip from "
                       "https://www.crcv.ucf.edu/data/UCF101.php, extract them into <data root>/ucf101/ (giving "
                       "UCF-101/<Class>/*.avi and ucfTrainTestlist/), then extract frames with ffmpeg: "
                       "`cd <data root>/ucf101 && for f in UCF-101/*/*.avi; do d=rawframes/$(basename $(dirname $f))/"
                       "$(basename $f .avi); mkdir -p $d && ffmpeg -loglevel error -i $f -q:v 2 $d/img_%05d.jpg; done` "
                       "(the layout mmaction2's extract_frames makes).")),
        GvbSet("gtsrb", "gtsrb", 43, "German Traffic Sign Recognition Benchmark", files.read_gtsrb,
               {"train": 39209, "test": 12630},
               "  GTSRB/Training/<00000-00042>/*.ppm, GTSRB/Final_Test/Images/*.ppm, GT-final_test.csv",
               ("GTSRB/Training", "GTSRB/Final_Test/Images", "GT-final_test.csv"),
               extras_under=("GTSRB/Final_Test/Images",),
               archives=tuple(Archive(f"https://sid.erda.dk/public/archives/daaeac0d7ce1152aea9b61d9f1e19370/{n}", m)
                              for n, m in (("GTSRB-Training_fixed.zip", "513f3c79a4c5141765e10e952eaa2478"),
                                           ("GTSRB_Final_Test_Images.zip", "c7e4e6327067d32654124b0fe9e82185"),
                                           ("GTSRB_Final_Test_GT.zip", "fe31e9c9270bbcd7b84b7f21a9d9d9e5")))),
        GvbSet("pcam", "pcam", 2, "PatchCamelyon 96×96 histopathology patches (HDF5)", records.read_pcam,
               {"train": 262144, "val": 32768, "test": 32768}, "  camelyonpatch_level_2_split_{train,valid,test}_{x,y}.h5",
               tuple(pcam),
               manual=("PCam is hosted on Google Drive and Zenodo (https://github.com/basveeling/pcam): download the six "
                       "camelyonpatch_level_2_split_{train,valid,test}_{x,y}.h5.gz files (or `pip install gdown` and "
                       "run `python -c \"from torchvision.datasets import PCAM; [PCAM('<data root>', split=s, download=True) "
                       "for s in ('train', 'val', 'test')]\"`), gunzip them into <data root>/pcam/.")),
        GvbSet("imagenet", "imagenet", 1000, "ImageNet-1k (ILSVRC2012); test = the official val set", files.read_imagenet,
               {"train": 1281167, "val": 50000}, "  train/<wnid>/*.JPEG (1000 folders), val/<wnid>/*.JPEG (1000 folders)",
               ("train", "val"), test_split="val",
               manual=("Needs an image-net.org account (non-commercial terms): download ILSVRC2012_img_train.tar, "
                       "ILSVRC2012_img_val.tar and ILSVRC2012_devkit_t12.tar.gz into <data root>/imagenet/, then let "
                       "torchvision unpack them into class folders: `python -c \"from torchvision.datasets import "
                       "ImageNet; [ImageNet('<data root>/imagenet', split=s) for s in ('train', 'val')]\"` "
                       "(the tars can be deleted afterwards).")),
        GvbSet("kinetics700", "kinetics700", 700, "Kinetics-700 as frames (each clip's middle frame); test = val",
               frames.read_kinetics, {}, "  annotations/{train,validate}.csv, rawframes/{train,val}/<label>/<id>_<start>_<end>/img_00001.jpg …",
               ("annotations/train.csv", "annotations/validate.csv", "rawframes"), test_split="val",
               extra_checks=_kinetics_checks,
               manual=("Kinetics-700 is YouTube-derived (clips disappear over time, so counts vary): fetch the clips and "
                       "annotations with the CVDF mirror scripts (https://github.com/cvdfoundation/kinetics-dataset, "
                       "k700_2020) or torchvision's `Kinetics(root, frames_per_clip=1, num_classes='700', split=..., "
                       "download=True)`, put the CSVs in <data root>/kinetics700/annotations/, then extract frames per "
                       "clip with ffmpeg into rawframes/<split>/<label>/<clip file stem>/img_%05d.jpg.")),
    ]


GVB_SETS = {s.name: s for s in gvb_sets()}


@hookimpl
def register_datasets(register):
    for gvb_set in GVB_SETS.values():
        register(gvb_set.spec())
