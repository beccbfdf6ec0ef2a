"""Tiny fixture copies of the public endoscopy datasets, each in its PUBLISHED layout.

Shared by the loader tests (``test_endoscopy_datasets.py``, ``test_pools.py``) and the
end-to-end protocol tests (``test_paper_protocol.py``). Images are generated with PIL (a few
pixels each); nothing is downloaded. Layouts follow DOMAIN.md, "Public downstream datasets and
their published layouts", and the loaders' docstrings.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image

Size = tuple[int, int]  # (width, height), as PIL writes it


def _as_size(size: int | Size) -> Size:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def write_image(path: Path, size: int | Size = (24, 20), seed: int = 0,
                colour: Sequence[int] | None = None) -> Path:
    """An RGB image: uniform noise, or ``colour`` plus Gaussian noise (σ = 8) when given."""
    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = _as_size(size)
    rng = np.random.default_rng(seed)
    if colour is None:
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    else:
        pixels = np.clip(np.array(colour)[None, None] + rng.normal(0, 8, (height, width, 3)), 0, 255)
    Image.fromarray(pixels.astype(np.uint8)).save(path)
    return path


def write_mask(path: Path, size: int | Size = (24, 20), box=(4, 4, 12, 10), values=(0, 255)) -> Path:
    """A grey mask: ``values[1]`` inside ``box`` = (x0, y0, x1, y1), ``values[0]`` elsewhere."""
    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = _as_size(size)
    mask = np.full((height, width), values[0], np.uint8)
    x0, y0, x1, y1 = box
    mask[y0:y1, x0:x1] = values[1]
    Image.fromarray(mask).save(path)
    return path


# --- downstream segmentation sets -----------------------------------------------------------
STEMS = [f"case{i:02d}" for i in range(10)]


def make_pairs(root: Path, images: str, masks: str, names, *, image_ext=".jpg", mask_ext=".jpg",
               mask_name: Callable[[str], str] = lambda stem: stem, size: int | Size = (24, 20)) -> Path:
    """``root/images/<stem><image_ext>`` with ``root/masks/<mask_name(stem)><mask_ext>``."""
    for i, stem in enumerate(names):
        write_image(root / images / f"{stem}{image_ext}", size=size, seed=i)
        write_mask(root / masks / f"{mask_name(stem)}{mask_ext}", size=size, box=(i % 5, 2, 10 + i % 5, 9))
    return root


def make_polypgen(root: Path, per_centre: int = 3, size: int | Size = (24, 20)) -> Path:
    """``data_C1..6/images_Cx/<stem>.jpg`` + ``masks_Cx/<stem>_mask.jpg``, with the published
    C3 exception (image stem ending in ``_``) and a non-image file in a mask folder."""
    for centre in range(1, 7):
        for j in range(per_centre):
            stem = f"C{centre}_frame{j}"
            write_image(root / f"data_C{centre}" / f"images_C{centre}" / f"{stem}.jpg", size=size,
                        seed=centre * 10 + j)
            write_mask(root / f"data_C{centre}" / f"masks_C{centre}" / f"{stem}_mask.jpg", size=size)
    # the published C3 exception: image stem with a trailing underscore, mask without
    write_image(root / "data_C3" / "images_C3" / "C3_EndoCV2021_00489_.jpg", size=size)
    write_mask(root / "data_C3" / "masks_C3" / "C3_EndoCV2021_00489_mask.jpg", size=size)
    (root / "data_C2" / "masks_C2" / "C2_frame0_mask.txt").write_text("polyp 1 2 3 4\n")  # ignored
    return root


def make_kvasir_instrument(root: Path, names, *, test_count: int = 1, size: int | Size = (24, 20)) -> Path:
    """``images/*.jpg``, ``masks/*.png`` and the published ``train.txt``/``test.txt`` (stems)."""
    make_pairs(root, "images", "masks", names, mask_ext=".png", size=size)
    (root / "train.txt").write_text("\n".join(names[test_count:]) + "\n")
    (root / "test.txt").write_text("\n".join(names[:test_count]) + "\n")
    return root


EDD2020_CLASSES = ("BE", "suspicious", "HGD", "cancer", "polyp")


def edd2020_stem(name: str) -> str:
    """A published-style EDD2020 image stem (``EDD2020_ACB0001``: it holds an underscore)."""
    return f"EDD2020_{name}"


def make_edd2020(root: Path, names, size: int | Size = (24, 20)) -> Path:
    """``originalImages/<stem>.jpg``, ``masks/<stem>_<class>.tif`` (0/255, one file per class
    present), ``bbox/<stem>.txt`` (``xmin ymin xmax ymax class``) and ``class_list.txt``, as
    published. Image i has class i mod 5 in box (1, 2, 10, 9) shifted right by i mod 5; every
    third image also has the next class in box (6, 4, 14, 12), overlapping the first."""
    (root / "class_list.txt").parent.mkdir(parents=True, exist_ok=True)
    (root / "class_list.txt").write_text("\n".join(EDD2020_CLASSES) + "\n")
    for i, name in enumerate(names):
        stem = edd2020_stem(name)
        write_image(root / "originalImages" / f"{stem}.jpg", size=size, seed=i)
        boxes = [(EDD2020_CLASSES[i % 5], (1 + i % 5, 2, 10 + i % 5, 9))]
        if i % 3 == 0:
            boxes.append((EDD2020_CLASSES[(i + 1) % 5], (6, 4, 14, 12)))
        for cls, box in boxes:
            write_mask(root / "masks" / f"{stem}_{cls}.tif", size=size, box=box)
        (root / "bbox").mkdir(exist_ok=True)
        (root / "bbox" / f"{stem}.txt").write_text("".join(f"{x0} {y0} {x1} {y1} {cls}\n"
                                                           for cls, (x0, y0, x1, y1) in boxes))
    return root


def _paired(images: str, masks: str, image_ext: str, mask_ext: str, mask_name=lambda stem: stem):
    def build(root: Path, names, size: int | Size) -> Path:
        return make_pairs(root, images, masks, names, image_ext=image_ext, mask_ext=mask_ext,
                          mask_name=mask_name, size=size)
    return build


#: dataset name → builder(root, stems, size) writing a tiny copy in the published layout
SEGMENTATION_LAYOUTS: dict[str, Callable[..., Path]] = {
    "kvasir_seg": _paired("images", "masks", ".jpg", ".jpg"),
    "kvasir_sessile": _paired("images", "masks", ".jpg", ".jpg"),
    "kvasir_instrument": lambda root, names, size: make_kvasir_instrument(root, names, size=size),
    "cvc_clinicdb": _paired("Original", "Ground Truth", ".tif", ".tif"),
    "cvc_colondb": _paired("images", "masks", ".png", ".png"),
    "cvc_300": _paired("images", "masks", ".png", ".png"),
    "etis_larib": _paired("ETIS-LaribPolypDB", "GroundTruth", ".tif", ".tif", lambda stem: f"p{stem}"),
    # PolypGen has its own centre layout: one frame per centre plus the C3 exception
    "polypgen2021": lambda root, names, size: make_polypgen(root, per_centre=1, size=size),
    "edd2020": make_edd2020,
}


# --- pre-training pools --------------------------------------------------------------------
POOL_COLOUR = (128, 64, 32)

HK_CLASSES = {  # tract/finding type/class: number of images
    "lower-gi-tract/pathological-findings/polyps": 6,
    "lower-gi-tract/anatomical-landmarks/cecum": 5,
    "upper-gi-tract/anatomical-landmarks/pylorus": 4,
}


def make_hyperkvasir(root: Path, unlabeled: int = 7, size: int | Size = 12) -> Path:
    """``labeled-images/<tract>/<finding type>/<class>/*.jpg`` and ``unlabeled-images/images/*.jpg``."""
    n = 0
    for folder, count in HK_CLASSES.items():
        for _ in range(count):
            write_image(root / "labeled-images" / folder / f"{n:08x}-uuid.jpg", size=size, seed=n,
                        colour=POOL_COLOUR)
            n += 1
    for i in range(unlabeled):
        write_image(root / "unlabeled-images" / "images" / f"u{i:04d}.jpg", size=size, seed=100 + i,
                    colour=POOL_COLOUR)
    return root


VIDEOS = ["0123456789abcdef", "fedcba9876543210", "00aa11bb22cc33dd", "deadbeefdeadbeef", "1111222233334444"]


def make_capsule(root: Path, size: int | Size = 12) -> Path:
    """``labelled_images/<class>/<16-hex video id>_<frame>.jpg``: 5 videos × 2 classes × 2 frames."""
    n = 0
    for v, video in enumerate(VIDEOS):
        for cls in ("Erosion", "Normal clean mucosa"):
            for frame in range(2):
                write_image(root / "labelled_images" / cls / f"{video}_{100 * v + 10 * (cls == 'Erosion') + frame}.jpg",
                            size=size, seed=n, colour=POOL_COLOUR)
                n += 1
    return root


def make_gastrovision(root: Path, size: int | Size = 12) -> Path:
    """``<class>/*.jpg``: 3 classes × 5 images, file names repeating across classes as published."""
    for c, cls in enumerate(("Normal stomach", "Colon polyps", "Esophagitis")):
        for i in range(5):
            write_image(root / cls / f"100H{i:04d}.jpg", size=size, seed=10 * c + i, colour=POOL_COLOUR)
    return root


#: pool name → builder(root, size) writing a tiny copy in the published layout
POOL_LAYOUTS: dict[str, Callable[..., Path]] = {
    "hyperkvasir": lambda root, size: make_hyperkvasir(root, size=size),
    "kvasir_capsule": make_capsule,
    "gastrovision": make_gastrovision,
}
