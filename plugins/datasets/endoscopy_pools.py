"""Pre-training pools: HyperKvasir, Kvasir-Capsule, GastroVision and their union DataDEL.

The MedDEL benchmark (Yang et al., ACM MM 2024, arXiv 2401.17542) pre-trains on DataDEL, the
union of GastroVision (8,000 frames), HyperKvasir (110,079 frames) and Kvasir-Capsule
(47,238 labelled frames). The labelled parts double as classification sets: split "all" is
the pool (every image), "train"/"test" are a seeded, class-stratified split of the labelled
images (or the dataset's official two-fold split where you pass its file).

Class names are the class folder names as published, sorted; labels index them.
"""
from __future__ import annotations

import csv
import os
import re
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

from delbench.sdk import (ConfigError, DatasetError, check_bool, check_choice, check_int, check_path, check_subset,
                          hookimpl)

from delbench_plugins.lib.discovery import (Discovery, FileItem, class_folder_items, labelled_items, list_images,
                                            relative_id, resolve_root)
from delbench_plugins.lib.folder_dataset import FolderDataset
from delbench_plugins.lib.splits import SplitPlan, plan_from_lists


def _read_split_csv(path: Path, *, delimiter: str, name_column: str, fold_column: str | None = None
                    ) -> list[dict[str, str]]:
    if not path.is_file():
        raise DatasetError(f"official split file {path} not found")
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter=delimiter))
    needed = [name_column] + ([fold_column] if fold_column else [])
    if rows and any(col not in rows[0] for col in needed):
        raise DatasetError(f"official split file {path} lacks column(s) {needed}; has {list(rows[0])}")
    return rows


class LabelledPool(FolderDataset):
    """A pool whose labelled images also serve classification (train/test by class).

    A pool published with an official fold split names its folds in ``official_folds``; its
    ``test_fold`` parameter (default 1) picks the fold used as test and is checked here, once.
    A pool without one rejects ``test_fold``.
    """

    roles: ClassVar[tuple[str, ...]] = ("pool", "classification")
    split_stratify: ClassVar[str | None] = "label"
    #: the fold indices of the dataset's official split (empty: none published)
    official_folds: ClassVar[tuple[int, ...]] = ()

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> None:
        super().check_params(params)
        if params.get("test_fold") is None:
            return
        if not cls.official_folds:
            raise ConfigError(f"{cls.name} has no official fold split; test_fold does not apply")
        check_int(params, "test_fold")  # refuses True, which would pass as fold 1
        check_choice(params, "test_fold", cls.official_folds)

    def __init__(self, *, test_fold: int | None = None, **common: Any) -> None:
        # fold 1 is the test fold by default wherever an official split exists
        self.test_fold = None if not self.official_folds else int(1 if test_fold is None else test_fold)
        super().__init__(**common)

    def splittable(self, item: FileItem) -> bool:
        return item.label is not None

    def official_plan(self, items: Sequence[FileItem], lists: Mapping[str, Sequence[str]],
                      sources: Mapping[str, str]) -> SplitPlan:
        """The official split from per-split lists of file names (``test_fold`` is test)."""
        plan = plan_from_lists(items, lists, key_of=lambda it: it.image.name, sources=sources, method="official")
        plan.details["test_fold"] = self.test_fold
        return plan


class HyperKvasir(LabelledPool):
    """HyperKvasir: 110,079 GI endoscopy images, 10,662 of them labelled in 23 classes.

    Borgli et al., Scientific Data 2020. Root: the ``hyper-kvasir`` folder holding
    ``labeled-images/<tract>/<finding type>/<class>/*.jpg`` and
    ``unlabeled-images/images/*.jpg``. Parameters: ``parts`` — which parts to read,
    ("labeled", "unlabeled") by default; ``official_split_csv`` — path of the published
    ``official_splits/2_fold_split.csv`` (``file-name;class-name;split-index``), with
    ``test_fold`` (default 1) as test, instead of the seeded split. Metadata: ``part``,
    ``tract``, ``finding_type``, ``class_name``. No video ids are derivable from the file names
    (UUIDs), so ``sequence_id`` is not provided.
    """

    name = "hyperkvasir"
    version = "1"
    description = "HyperKvasir GI endoscopy pool (labelled 23 classes + unlabelled images)"
    layout_help = "labeled-images/<tract>/<finding type>/<class>/*.jpg and unlabeled-images/images/*.jpg"
    all_parts: ClassVar[tuple[str, ...]] = ("labeled", "unlabeled")
    official_folds: ClassVar[tuple[int, ...]] = (0, 1)

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> None:
        super().check_params(params)
        check_subset(params, "parts", cls.all_parts)
        check_path(params, "official_split_csv")
        if params.get("split", "train") != "all" and "labeled" not in params.get("parts", cls.all_parts):
            raise ConfigError("the train/test splits are made of labelled images; add 'labeled' to parts "
                              "or use split='all'")

    def __init__(self, *, parts: Sequence[str] = all_parts, official_split_csv: str | os.PathLike | None = None,
                 **common: Any) -> None:
        self.parts = tuple(parts)
        self.official_split_csv = official_split_csv
        super().__init__(**common)

    def discover(self, root: Path) -> Discovery:
        items: list[FileItem] = []
        problems = []
        class_names: tuple[str, ...] = ()
        if "labeled" in self.parts:
            base = root / "labeled-images"
            if not base.is_dir():
                raise DatasetError(f"{self.name}: {base} not found; expected layout: {self.layout_help}")
            found, problems = class_folder_items(base)

            def where(path: Path) -> dict[str, str]:
                parts = path.relative_to(base).parts  # tract, finding type, class, file
                return {"part": "labeled", "tract": parts[0] if len(parts) > 3 else "",
                        "finding_type": parts[1] if len(parts) > 3 else ""}

            items, class_names = labelled_items(found, id_root=root, extra_meta=where)
        if "unlabeled" in self.parts:
            base = root / "unlabeled-images" / "images"
            if not base.is_dir():
                raise DatasetError(f"{self.name}: {base} not found; expected layout: {self.layout_help}")
            items += [FileItem(relative_id(p, root), p, meta={"part": "unlabeled", "class_name": ""})
                      for p in list_images(base)]
        items.sort(key=lambda it: it.id)
        return Discovery(items, problems, class_names, layout=self.layout_help)

    def published_split(self, items: Sequence[FileItem]) -> SplitPlan | None:
        if self.official_split_csv is None:
            return None
        path = Path(self.official_split_csv).expanduser()
        rows = _read_split_csv(path, delimiter=";", name_column="file-name", fold_column="split-index")
        lists: dict[str, list[str]] = {"train": [], "test": []}
        for row in rows:
            lists["test" if int(row["split-index"]) == self.test_fold else "train"].append(row["file-name"])
        return self.official_plan(items, lists, {"train": f"{path} (folds != {self.test_fold})",
                                                 "test": f"{path} (fold {self.test_fold})"})


_CAPSULE_NAME = re.compile(r"^(?P<video>[0-9a-f]{16})_(?P<frame>\d+)$")


class KvasirCapsule(LabelledPool):
    """Kvasir-Capsule: 47,238 labelled video-capsule frames in 14 classes (Smedsrud et al., Sci. Data 2021).

    Root: the folder holding ``labelled_images/<class>/*.jpg``. Frames are named
    ``<16-hex video id>_<frame number>.jpg`` (as in the official split files), which gives the
    ``sequence_id`` (video) and ``frame`` metadata; other names get an empty sequence id.
    Parameters: ``split_by_video`` (default True) — the seeded split keeps whole videos on
    one side, so near-identical neighbouring frames never straddle train and test;
    ``official_split_dir`` — the folder of the published ``split_0.csv``/``split_1.csv``
    (``filename,label``), with ``test_fold`` (default 1) as test.
    """

    name = "kvasir_capsule"
    version = "1"
    description = "Kvasir-Capsule VCE frames (14 classes; video id from file names)"
    layout_help = "labelled_images/<class>/<video id>_<frame>.jpg"
    official_folds: ClassVar[tuple[int, ...]] = (0, 1)

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> None:
        super().check_params(params)
        check_bool(params, "split_by_video")
        check_path(params, "official_split_dir")

    def __init__(self, *, split_by_video: bool = True, official_split_dir: str | os.PathLike | None = None,
                 **common: Any) -> None:
        self.split_group = "sequence_id" if split_by_video else None
        self.official_split_dir = official_split_dir
        super().__init__(**common)

    @staticmethod
    def frame_meta(path: Path) -> dict[str, Any]:
        match = _CAPSULE_NAME.match(path.stem)
        if match is None:
            return {"sequence_id": "", "frame": -1}
        return {"sequence_id": match["video"], "frame": int(match["frame"])}

    def discover(self, root: Path) -> Discovery:
        base = root / "labelled_images"
        if not base.is_dir():
            raise DatasetError(f"{self.name}: {base} not found; expected layout: {self.layout_help}")
        found, problems = class_folder_items(base)
        items, class_names = labelled_items(found, id_root=root, extra_meta=self.frame_meta)
        return Discovery(items, problems, class_names, layout=self.layout_help)

    def published_split(self, items: Sequence[FileItem]) -> SplitPlan | None:
        if self.official_split_dir is None:
            return None
        folder = Path(self.official_split_dir).expanduser()
        paths = {"train": folder / f"split_{1 - self.test_fold}.csv", "test": folder / f"split_{self.test_fold}.csv"}
        lists = {split: [row["filename"] for row in _read_split_csv(path, delimiter=",", name_column="filename")]
                 for split, path in paths.items()}
        return self.official_plan(items, lists, {s: str(p) for s, p in paths.items()})


class GastroVision(LabelledPool):
    """GastroVision: 8,000 GI endoscopy images in 27 classes (Jha et al., ML4MHD @ ICML 2023).

    Root: the folder holding one sub-folder per class (``<class>/*.jpg``). File names repeat
    across classes, so ids keep the class folder. The split published in the GastroVision
    repository covers 22 classes with differently spelled names and is not used; the split
    is seeded and stratified by class.
    """

    name = "gastrovision"
    version = "1"
    description = "GastroVision GI endoscopy images (27 classes, one folder per class)"
    layout_help = "<class>/*.jpg (one folder per class)"

    def discover(self, root: Path) -> Discovery:
        found, problems = class_folder_items(root)
        if not found:
            raise DatasetError(f"{self.name}: no images in class folders under {root}; "
                               f"expected layout: {self.layout_help}")
        items, class_names = labelled_items(found, id_root=root)
        return Discovery(items, problems, class_names, layout=self.layout_help)


class DataDEL(FolderDataset):
    """DataDEL: the MedDEL pre-training pool, the union of HyperKvasir, Kvasir-Capsule and GastroVision.

    As the MedDEL paper lists it: GastroVision 8,000 + HyperKvasir 110,079 + Kvasir-Capsule
    47,238 frames = 165,317 images. (The paper's selection table starts from an
    88,282-image pool, which this union does not reproduce; the paper does not say which
    images that is.) Ids are ``<source>/<id in the source>``; metadata: ``source``,
    ``class_name`` (empty where unlabelled), ``sequence_id`` (Kvasir-Capsule video, else empty).

    Roots: ``roots={"hyperkvasir": PATH, ...}``; else ``root/<source name>`` when ``root`` is
    given (a delbench convention, not a published layout); else each source's own
    ``DELBENCH_<SOURCE>_ROOT``. ``sources`` picks the members; ``hyperkvasir_parts`` is passed
    on to HyperKvasir. Split: "all" only (a pool).
    """

    name = "datadel"
    version = "1"
    description = "DataDEL pool: HyperKvasir + Kvasir-Capsule + GastroVision (MedDEL)"
    roles: ClassVar[tuple[str, ...]] = ("pool",)
    splits: ClassVar[tuple[str, ...]] = ("all",)
    source_classes: ClassVar[Mapping[str, type[FolderDataset]]] = {
        "hyperkvasir": HyperKvasir, "kvasir_capsule": KvasirCapsule, "gastrovision": GastroVision}
    layout_help = "root/hyperkvasir, root/kvasir_capsule, root/gastrovision (each in its own layout)"

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> None:
        super().check_params(params)
        check_subset(params, "sources", tuple(cls.source_classes))
        check_subset(params, "hyperkvasir_parts", HyperKvasir.all_parts)
        roots = params.get("roots") or {}
        if not isinstance(roots, Mapping) or set(roots) - set(cls.source_classes):
            raise ConfigError(f"roots must map source names {tuple(cls.source_classes)} to folders, got {roots!r}")

    def __init__(self, *, root: str | os.PathLike | None = None, roots: Mapping[str, str] | None = None,
                 sources: Sequence[str] = ("hyperkvasir", "kvasir_capsule", "gastrovision"),
                 hyperkvasir_parts: Sequence[str] = HyperKvasir.all_parts, **common: Any) -> None:
        self.sources = tuple(sources)
        self.roots = dict(roots or {})
        self.hyperkvasir_parts = tuple(hyperkvasir_parts)
        self._base_root = root
        common.setdefault("split", "all")
        super().__init__(root=root, **common)

    def resolve_root(self, root: str | os.PathLike | None) -> Path:
        # datadel has no single root of its own; the sources resolve theirs in discover()
        return Path(root).expanduser() if root is not None else Path(".")

    def _source_root(self, source: str) -> Path:
        cls = self.source_classes[source]
        if source in self.roots:
            return resolve_root(cls.name, self.roots[source], cls.layout_help)
        if self._base_root is not None:
            return resolve_root(cls.name, Path(self._base_root).expanduser() / source, cls.layout_help)
        return resolve_root(cls.name, None, cls.layout_help)

    def discover(self, root: Path) -> Discovery:
        items: list[FileItem] = []
        problems = []
        for source in self.sources:
            extra = {"parts": self.hyperkvasir_parts} if source == "hyperkvasir" else {}
            member = self.source_classes[source].inspect_files(root=self._source_root(source), **extra)
            for it in member.discovery.items:
                meta = {"source": source, "class_name": it.meta.get("class_name", ""),
                        "sequence_id": it.meta.get("sequence_id", "")}
                items.append(FileItem(f"{source}/{it.id}", it.image, it.masks, None, meta))
            problems += member.problems
        items.sort(key=lambda it: it.id)
        return Discovery(items, problems, layout=self.layout_help)


POOLS = (HyperKvasir, KvasirCapsule, GastroVision, DataDEL)


@hookimpl
def delbench_register_datasets() -> list[type]:
    return list(POOLS)
