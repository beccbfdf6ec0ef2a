"""Public endoscopy segmentation datasets, read in the layouts their publishers ship.

Binary (background / lesion-or-instrument) segmentation sets used downstream by the MedDEL
benchmark (Yang et al., ACM MM 2024, arXiv 2401.17542). Each class reads one published
layout; the shared machinery (root resolution, pairing by stem, mask binarisation, seeded
and published splits, problem reporting) is in :mod:`delbench_plugins.lib`.

Not included, because their published layout could not be confirmed from public sources:
``imageclefmed_polyp``, ``edd2020`` (sources disagree on the mask naming:
``masks/<stem>_<class>.tif``, ``masksPerClass/<class>/…``, ``FileName_ClassLabel_#Region.tif``)
and ``ead2019``. Use ``image_folder`` for them after arranging images/ and masks/ by stem.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

from delbench.sdk import ConfigError, DatasetError, check_choice, check_subset, hookimpl

from delbench_plugins.lib.discovery import Discovery, FileItem
from delbench_plugins.lib.folder_dataset import PairedFolderDataset
from delbench_plugins.lib.pairing import PairedLayout, pair_folders, paired_layout_help
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
    names one. Seeded split (frames of one video are neighbours: see README).
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


DATASETS = (KvasirSEG, KvasirInstrument, KvasirSessile, CVCClinicDB, CVCColonDB, CVC300, ETISLarib,
            PolypGen2021)


@hookimpl
def delbench_register_datasets() -> list[type]:
    return list(DATASETS)
