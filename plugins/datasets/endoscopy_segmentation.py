"""Public endoscopy segmentation datasets, read in the layouts their publishers ship.

Binary (background / lesion-or-instrument) segmentation sets used downstream by the MedDEL
benchmark (Yang et al., ACM MM 2024, arXiv 2401.17542). Each class reads one published
layout; the shared machinery (root resolution, pairing by stem, mask binarisation, seeded
and published splits, problem reporting) is in :mod:`delbench_plugins.lib`.

EDD2020 (:class:`EDD2020`) has one mask file per class and reads as a label map.

Not included, because their published layouts could not be confirmed from two independent
public sources (docs/datasets.md, "Not built in"): ImageCLEFmed polyp and EAD2019. Use
``image_folder`` for them after arranging images/ and masks/ by stem.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np

from delbench.sdk import ConfigError, DatasetError, check_choice, check_subset, hookimpl

from delbench_plugins.lib.discovery import Discovery, FileItem, list_images, relative_id
from delbench_plugins.lib.folder_dataset import FolderDataset, PairedFolderDataset
from delbench_plugins.lib.masks import read_label_mask
from delbench_plugins.lib.pairing import PairedLayout, index_by_key, pair_folders, paired_layout_help
from delbench_plugins.lib.splits import SplitPlan

_IMAGES_MASKS = PairedLayout("images", "masks")


class KvasirSEG(PairedFolderDataset):
    """Kvasir-SEG: 1,000 colonoscopy polyp images with masks (Jha et al., MMM 2020).

    Root: the ``Kvasir-SEG`` folder of ``kvasir-seg.zip`` (Simula), holding ``images/*.jpg``
    and ``masks/*.jpg`` with the same file names. The archive has no split: seeded split
    (``test_fraction``, ``split_seed``), or pass ``train_list``/``test_list`` (e.g. the 880/120
    lists of the MediaEval 2020 Medico task).
    """

    name = "kvasir_seg"
    version = "1"
    description = "Kvasir-SEG polyp segmentation (1,000 images; images/ + masks/ by stem)"
    layouts = (_IMAGES_MASKS,)
    layout_help = paired_layout_help(layouts)
    class_names = ("background", "polyp")


class KvasirInstrument(PairedFolderDataset):
    """Kvasir-Instrument: 590 GI endoscopy images with tool masks (Jha et al., MMM 2021).

    Root: the ``kvasir-instrument`` folder holding ``images/*.jpg``, ``masks/*.png`` (same
    stems), ``train.txt`` and ``test.txt`` (one image stem per line; 472 / 118). The published
    split files are honoured; ``train_list``/``test_list`` replace them.
    """

    name = "kvasir_instrument"
    version = "1"
    description = "Kvasir-Instrument tool segmentation (590 images; published train.txt/test.txt)"
    layouts = (_IMAGES_MASKS,)
    layout_help = paired_layout_help(layouts, " plus train.txt and test.txt (image stems)")
    class_names = ("background", "instrument")
    default_lists = ("train.txt", "test.txt")


class KvasirSessile(PairedFolderDataset):
    """Kvasir-Sessile: the 196 sessile (flat, < 10 mm) polyps of Kvasir-SEG (Jha et al., 2021).

    Root: the ``sessile-main-Kvasir-SEG`` folder of ``kvasir-sessile.zip`` holding ``images/``
    and ``masks/`` with the same file names. Seeded split.
    """

    name = "kvasir_sessile"
    version = "1"
    description = "Kvasir-Sessile polyp segmentation (196 images; images/ + masks/ by stem)"
    layouts = (_IMAGES_MASKS,)
    layout_help = paired_layout_help(layouts)
    class_names = ("background", "polyp")


class CVCClinicDB(PairedFolderDataset):
    """CVC-ClinicDB (CVC-612): 612 colonoscopy frames with polyp masks (Bernal et al., CMIG 2015).

    Root: the ``CVC-ClinicDB`` folder. Published variants: ``Original/`` + ``Ground Truth/``
    (``1.tif`` … ``612.tif``) directly under the root, or under ``PNG/`` and ``TIF/``. The
    first present of root, ``PNG/``, ``TIF/`` is used, unless ``variant`` ("png" or "tif")
    names one. Seeded split (frames of one video are neighbours: see docs/datasets.md).
    """

    name = "cvc_clinicdb"
    version = "1"
    description = "CVC-ClinicDB polyp segmentation (612 frames; Original/ + Ground Truth/)"
    layouts = (PairedLayout("Original", "Ground Truth"), PairedLayout("PNG/Original", "PNG/Ground Truth"),
               PairedLayout("TIF/Original", "TIF/Ground Truth"))
    layout_help = paired_layout_help(layouts)
    class_names = ("background", "polyp")
    _variants: ClassVar[dict[str, PairedLayout]] = {"png": layouts[1], "tif": layouts[2]}

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> None:
        super().check_params(params)
        check_choice(params, "variant", (None, *sorted(cls._variants)))

    def __init__(self, *, variant: str | None = None, **common: Any) -> None:
        self.variant = variant
        super().__init__(**common)

    def discover(self, root: Path) -> Discovery:
        if self.variant is None:
            return super().discover(root)
        layout = self._variants[self.variant]
        if not layout.exists(root):
            raise DatasetError(f"{self.name}: variant {self.variant!r} needs {layout.describe()} under {root}")
        return pair_folders(root, layout)


class CVCColonDB(PairedFolderDataset):
    """CVC-ColonDB: 380 colonoscopy frames with polyp masks (Bernal et al., PR 2012).

    Root: the ``CVC-ColonDB`` folder as distributed in the PraNet test set
    (``TestDataset/CVC-ColonDB``): ``images/`` and ``masks/`` (PNG, same names). Seeded split.
    """

    name = "cvc_colondb"
    version = "1"
    description = "CVC-ColonDB polyp segmentation (380 frames; images/ + masks/, PraNet test set)"
    layouts = (_IMAGES_MASKS,)
    layout_help = paired_layout_help(layouts)
    class_names = ("background", "polyp")


class CVC300(PairedFolderDataset):
    """CVC-300: the 60-image test part of CVC-EndoSceneStill (Vázquez et al., JHE 2017).

    Root: the ``CVC-300`` folder of the PraNet test set (``TestDataset/CVC-300``):
    ``images/`` and ``masks/`` (PNG, same names). Seeded split.
    """

    name = "cvc_300"
    version = "1"
    description = "CVC-300 polyp segmentation (60 frames; images/ + masks/, PraNet test set)"
    layouts = (_IMAGES_MASKS,)
    layout_help = paired_layout_help(layouts)
    class_names = ("background", "polyp")


class ETISLarib(PairedFolderDataset):
    """ETIS-LaribPolypDB: 196 colonoscopy frames with polyp masks (Silva et al., IJCARS 2014).

    Root: the ``ETIS-LaribPolypDB`` download, holding ``ETIS-LaribPolypDB/1.tif`` … and
    ``GroundTruth/p1.tif`` … (mask = ``p`` + image stem); or the PraNet test-set copy with
    ``images/`` and ``masks/`` (same names). The first layout found is used. Seeded split.
    """

    name = "etis_larib"
    version = "1"
    description = "ETIS-LaribPolypDB polyp segmentation (196 frames; GroundTruth/p<n>)"
    layouts = (PairedLayout("ETIS-LaribPolypDB", "GroundTruth", mask_prefix="p"), _IMAGES_MASKS)
    layout_help = paired_layout_help(layouts)
    class_names = ("background", "polyp")


class PolypGen2021(PairedFolderDataset):
    """PolypGen2021: multi-centre polyp segmentation, single frames of six centres.

    Ali et al., Scientific Data 2023 (EndoCV2021). Root: ``PolypGen2021_MultiCenterData_v3``,
    holding ``data_C1`` … ``data_C6``, each with ``images_Cx/<stem>.jpg`` and
    ``masks_Cx/<stem>_mask.jpg`` (1,537 frames; 256/301/457/227/208/88). One published image
    stem ends in ``_`` where its mask does not (``C3_EndoCV2021_00489_.jpg``); trailing
    underscores of image stems are ignored when pairing. The sequence data
    (``sequenceData/``) is not read.

    Parameters: ``centres`` (which of 1–6 to read; default all); ``test_centres``, e.g.
    ``(6,)``: a cross-centre split — train on the other read centres, test on these (the
    ``test_fraction``/``split_seed`` seeded split is used when it is None). Metadata column
    ``centre`` (int).
    """

    name = "polypgen2021"
    version = "1"
    description = "PolypGen2021 multi-centre polyp segmentation (6 centres; centre metadata, cross-centre split)"
    class_names = ("background", "polyp")
    all_centres: ClassVar[tuple[int, ...]] = (1, 2, 3, 4, 5, 6)
    layout_help = ("data_C1..data_C6/images_Cx/<stem>.jpg with masks data_Cx/masks_Cx/<stem>_mask.jpg")

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> None:
        super().check_params(params)
        check_subset(params, "centres", cls.all_centres)
        if params.get("test_centres") is not None:
            check_subset(params, "test_centres", cls.all_centres)
        centres, test_centres = params.get("centres", cls.all_centres), params.get("test_centres")
        if test_centres is not None and not set(test_centres) < set(centres):
            raise ConfigError(f"test_centres {tuple(test_centres)} must be a non-empty proper subset of the "
                              f"centres read {tuple(centres)}")

    def __init__(self, *, centres: Sequence[int] = all_centres, test_centres: Sequence[int] | None = None,
                 **common: Any) -> None:
        self.centres = tuple(sorted(int(c) for c in centres))
        self.test_centres = None if test_centres is None else tuple(sorted(int(c) for c in test_centres))
        super().__init__(**common)

    @staticmethod
    def centre_layout(centre: int) -> PairedLayout:
        return PairedLayout(f"data_C{centre}/images_C{centre}", f"data_C{centre}/masks_C{centre}",
                            mask_suffix="_mask", image_stem_rstrip="_")

    def discover(self, root: Path) -> Discovery:
        items: list[FileItem] = []
        problems = []
        for centre in self.centres:
            layout = self.centre_layout(centre)
            if not layout.exists(root):
                raise DatasetError(f"{self.name}: centre {centre} folders missing under {root}: "
                                   f"expected {layout.describe()}")
            found = pair_folders(root, layout, meta={"centre": centre})
            items += found.items
            problems += found.problems
        items.sort(key=lambda it: it.id)
        return Discovery(items, problems, layout=self.layout_help)

    def published_split(self, items: Sequence[FileItem]) -> SplitPlan | None:
        if self.test_centres is None:
            return super().published_split(items)
        assignment = {it.id: ("test" if it.meta["centre"] in self.test_centres else "train") for it in items}
        return SplitPlan(assignment, "centres", {"centres": list(self.centres),
                                                  "test_centres": list(self.test_centres)})


class EDD2020(FolderDataset):
    """EDD2020: endoscopy disease detection and segmentation, 386 training frames (Ali et al.,
    EndoCV2020, arXiv 2003.03376), five classes in the order of the challenge's
    ``class_list.txt``: BE (Barrett's oesophagus), suspicious, HGD (high-grade dysplasia),
    cancer, polyp.

    Root: the unzipped training archive from IEEE DataPort
    (``EndoCV2020-Endoscopy-Disease-Detection-Segmentation-subChallenge_data``; the earlier
    release was ``EDD2020_release-I_2020-01-15``), holding ``originalImages/<stem>.jpg``,
    ``masks/<stem>_<class>.tif`` (one binary 0/255 mask per class present in the frame; a
    frame has one to five), ``bbox/<stem>.txt`` and ``class_list.txt``. The layout and the
    mask naming are confirmed by two independent public readers of the archive:

    - Supervisely's converter of the IEEE DataPort archive, https://github.com/dataset-ninja/edd2020
      (``src/convert.py``: images from ``originalImages/*.jpg``, masks ``masks/*.tif`` whose
      name splits on ``_`` into the image stem and the class, boxes ``bbox/<stem>.txt`` as
      ``xmin ymin xmax ymax class``, class names from ``class_list.txt``);
    - https://github.com/Adrien987k/EDD2020 (``main.py``: ``EDD2020_release-I_2020-01-15/
      originalImages/`` and ``.../masks/``; ``EDD.py``: the mask of class ``c`` of image
      ``<stem>`` is ``<stem>_c``, classes BE, suspicious, HGD, cancer, polyp, 386 images and
      502 mask files; ``util.py``: ``bbox/EDD2020_ACB0001.txt``).

    The organisers' own tools write the same names
    (https://github.com/sharib-vision/EDD2020: ``json2Labels/maskImageFunctions_EDD.py``
    saves ``<stem>_<class>.tif`` for each class present, ``compositeMasks.py`` reads them
    back by the last ``_`` field), although their README states
    ``FileName_ClassLabel_#Region.tif`` in one version and ``FileName_ClassLabel_mask.tif``
    in another; neither appears in any reader found, so only ``<stem>_<class>.tif`` is read
    and any other name in ``masks/`` is reported. One public loader reads a
    ``masksPerClass/<class>/`` folder instead; no second source shows it, so it is not read.

    Segmentation role: the mask is a label map over ``classes`` (default all five, in the
    list's order): background 0, ``classes[i]`` is i + 1. Classes overlap in a few frames
    (e.g. HGD inside BE); a pixel takes the later class of the list, which orders the
    oesophageal findings by severity (BE < suspicious < HGD < cancer; polyp occurs in other
    organs). ``classes=("polyp",)`` gives binary polyp segmentation (frames without a polyp
    are all background); ``binary=True`` merges the chosen classes into one foreground class
    ("lesion"), comparable with the binary polyp sets. The boxes (``bbox/``) are not read.
    There is no published train/test split of the training data: seeded split. Metadata
    column ``classes``: the classes a frame has masks for, joined by ``+``.
    """

    name = "edd2020"
    version = "1"
    description = ("EDD2020 disease segmentation (386 frames; originalImages/ + masks/<stem>_<class>.tif, "
                   "5 classes as a label map)")
    all_classes: ClassVar[tuple[str, ...]] = ("BE", "suspicious", "HGD", "cancer", "polyp")
    layout_help = ("originalImages/<stem>.jpg with masks/<stem>_<class>.tif, class one of BE, suspicious, "
                   "HGD, cancer, polyp")
    images_folder: ClassVar[str] = "originalImages"
    masks_folder: ClassVar[str] = "masks"

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> None:
        super().check_params(params)
        check_subset(params, "classes", cls.all_classes)
        check_choice(params, "binary", (False, True))

    def __init__(self, *, classes: Sequence[str] = all_classes, binary: bool = False, **common: Any) -> None:
        chosen = set(classes)
        self.classes = tuple(c for c in self.all_classes if c in chosen)  # the list's order
        self.binary = bool(binary)
        super().__init__(**common)

    def label_names(self) -> tuple[str, ...]:
        return ("background", "lesion") if self.binary else ("background", *self.classes)

    def discover(self, root: Path) -> Discovery:
        image_dir, mask_dir = root / self.images_folder, root / self.masks_folder
        if not (image_dir.is_dir() and mask_dir.is_dir()):
            raise DatasetError(f"{self.name}: {root} does not hold the expected layout: {self.layout_help}")
        images, problems = index_by_key(list_images(image_dir), lambda path: path.stem, "image")

        def mask_key(path: Path) -> str | None:  # "<image stem>_<class>", or None for another name
            stem, _, cls = path.stem.rpartition("_")
            return path.stem if stem and cls in self.all_classes else None

        found_masks, mask_problems = index_by_key(list_images(mask_dir), mask_key, "mask")
        problems += mask_problems
        masks: dict[str, dict[str, Path]] = {}
        for key, path in sorted(found_masks.items()):
            stem, _, cls = key.rpartition("_")
            if stem in images:
                masks.setdefault(stem, {})[cls] = path
            else:
                problems.append((str(path), f"mask has no image {stem}.<ext> in {image_dir}"))
        items = []
        for stem, image in images.items():
            found = masks.get(stem, {})
            if not found:
                problems.append((str(image), f"image has no mask {stem}_<class>.tif in {mask_dir}"))
                continue
            present = [c for c in self.all_classes if c in found]
            items.append(FileItem(relative_id(image, root), image, tuple(found[c] for c in present),
                                  meta={"classes": "+".join(present)}))
        items.sort(key=lambda it: it.id)
        return Discovery(items, problems, class_names=self.label_names(), layout=self.layout_help)

    def read_mask(self, item: FileItem) -> np.ndarray:
        label = {c: 1 if self.binary else i + 1 for i, c in enumerate(self.classes)}
        layers = [(label[c], path) for c, path in zip(item.meta["classes"].split("+"), item.masks) if c in label]
        if not layers:  # none of the chosen classes in this frame: all background, at the mask size
            return read_label_mask([(0, item.masks[0])], self.image_size, self.mask_threshold)
        return read_label_mask(layers, self.image_size, self.mask_threshold)


DATASETS = (KvasirSEG, KvasirInstrument, KvasirSessile, CVCClinicDB, CVCColonDB, CVC300, ETISLarib,
            PolypGen2021, EDD2020)


@hookimpl
def delbench_register_datasets() -> list[type]:
    return list(DATASETS)
