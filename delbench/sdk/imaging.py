"""Image file reading and decode checks shared by dataset plugins and ``delbench data check`` (PIL only, no torch)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from delbench.errors import DatasetError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif")

#: what PIL raises for a missing, truncated, corrupt or unsupported file (UnidentifiedImageError
#: is an OSError; SyntaxError and ValueError come from some broken headers and palettes)
READ_ERRORS: tuple[type[BaseException], ...] = (OSError, SyntaxError, ValueError)

Problem = tuple[str, str]  # (path, message)

#: grey values strictly between these are "neither black nor white" in a JPEG mask
AMBIGUOUS_LOW, AMBIGUOUS_HIGH = 32, 224
#: channels differing by more than this on more than COLOUR_FRACTION of pixels = a colour mask
COLOUR_SPREAD, COLOUR_FRACTION = 32, 0.01
LOSSY_SUFFIXES = (".jpg", ".jpeg")


def read_image(path: str | Path, size: int | None = None) -> np.ndarray:
    """RGB uint8 (H, W, 3), resized to size × size (bilinear) when ``size`` is set."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
            if size is not None:
                image = image.resize((size, size), Image.BILINEAR)
            return np.asarray(image, dtype=np.uint8)
    except READ_ERRORS as exc:
        raise DatasetError(f"cannot read image {path}: {exc}") from None


def read_mask(path: str | Path, size: int | None = None, threshold: int = 128) -> np.ndarray:
    """Binary mask uint8 (H, W) in {0, 1}: grey level ≥ ``threshold`` is foreground.

    Masks are converted to grey ("L") first, so RGB masks and JPEG-compressed masks (whose
    edges hold intermediate values) binarise the same way; resizing uses nearest neighbour.
    """
    from PIL import Image

    try:
        with Image.open(path) as image:
            image = image.convert("L")
            if size is not None:
                image = image.resize((size, size), Image.NEAREST)
            return (np.asarray(image) >= threshold).astype(np.uint8)
    except READ_ERRORS as exc:
        raise DatasetError(f"cannot read mask {path}: {exc}") from None


def decode_check(path: str | Path) -> tuple[tuple[int, int] | None, str | None]:
    """Fully decode an image file; return ((width, height), None) or (None, error message).

    JPEGs are decoded in draft (reduced-scale) mode: the whole stream is still read, so
    truncated or corrupt files fail, at a fraction of the cost.
    """
    from PIL import Image

    try:
        with Image.open(path) as image:
            size = image.size
            if image.format == "JPEG":
                image.draft("RGB", (max(1, size[0] // 8), max(1, size[1] // 8)))
            image.load()
        return size, None
    except READ_ERRORS as exc:
        return None, f"cannot decode image: {exc}"


def item_decode_problems(image: str | Path, masks: Sequence[str | Path] = (), *,
                         inspect_mask: Callable[[Path, Any], list[Problem]] | None = None) -> list[Problem]:
    """(path, message) problems of one item's files, read at their original size.

    The image must decode; each mask must decode and have the image's width × height.
    ``inspect_mask(path, pil_image)`` (``delbench data check``'s value checks) is called on
    every mask that decoded, so each mask file is read once.
    """
    from PIL import Image

    image = Path(image)
    image_size, error = decode_check(image)
    problems: list[Problem] = [] if error is None else [(str(image), error)]
    for mask in map(Path, masks):
        try:
            with Image.open(mask) as opened:
                opened.load()
                if image_size is not None and opened.size != image_size:
                    problems.append((str(mask), f"mask is {opened.size[0]}×{opened.size[1]} but image "
                                                f"{image.name} is {image_size[0]}×{image_size[1]}"))
                if inspect_mask is not None:
                    problems.extend(inspect_mask(mask, opened))
        except READ_ERRORS as exc:
            problems.append((str(mask), f"cannot decode mask: {exc}"))
    return problems


def mask_value_problem(grey: np.ndarray, *, lossy: bool, threshold: int, jpeg_tolerance: float) -> str | None:
    """Why a grey mask (uint8) is not a usable binary mask, or None (rules in the module docstring)."""
    if lossy:
        ambiguous = float(((grey > AMBIGUOUS_LOW) & (grey < AMBIGUOUS_HIGH)).mean())
        if ambiguous > jpeg_tolerance:
            return (f"{ambiguous:.1%} of pixels are neither near 0 nor near 255 (JPEG masks may have "
                    f"up to {jpeg_tolerance:.0%}): not a binary mask")
        return None
    values = set(np.unique(grey).tolist())
    if values <= {0, 255}:
        return None
    if values <= {0, 1}:
        if threshold > 1:
            return (f"mask values are 0/1 but foreground is read as grey ≥ {threshold}, so every pixel "
                    f"would be background; build the dataset with mask_threshold=1")
        return None
    shown = sorted(values)
    listed = ", ".join(map(str, shown[:6])) + (", …" if len(shown) > 6 else "")
    return f"mask values {{{listed}}} are not binary (expected 0/255, or 0/1 with mask_threshold=1)"


def mask_content_problems(path: Path, mask: Any, *, threshold: int = 128,
                          jpeg_tolerance: float = 0.05) -> list[Problem]:
    """Colour and value problems of a decoded mask (``mask`` a loaded PIL image): the rules
    ``delbench data check`` applies, and folder datasets with ``skip_unreadable=True`` skip by."""
    grey = np.asarray(mask.convert("L"))
    if mask.mode in ("RGB", "RGBA", "P", "CMYK", "YCbCr"):
        rgb = np.asarray(mask.convert("RGB"))
        spread = rgb.max(axis=2).astype(np.int16) - rgb.min(axis=2)
        if float((spread > COLOUR_SPREAD).mean()) > COLOUR_FRACTION:
            return [(str(path), "mask has colour (its channels differ): a colour-coded multi-class "
                                "mask cannot be read as a binary mask")]
    message = mask_value_problem(grey, lossy=path.suffix.lower() in LOSSY_SUFFIXES, threshold=threshold,
                                 jpeg_tolerance=jpeg_tolerance)
    return [(str(path), message)] if message else []
