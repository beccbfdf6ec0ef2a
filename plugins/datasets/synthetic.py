"""Procedurally generated endoscopy-like data: the embedded default pool and a downstream set.

``synthetic_endoscopy`` imitates the data-effective-learning problem: long videos of few
distinct scenes, so neighbouring frames are near-duplicates, plus a configurable share of
invalid frames (motion blur, too dark, over-exposed, bubbles/glare, out-of-body) planted in
episodes of ``invalid_episode_length`` frames that share their corruption, as in real video. Every frame
is generated on demand from ``(seed, index)``: nothing is stored, any size works, and the
ground truth (``sequence_id``, ``scene_id``, ``kind``) is known for every frame, so a report
can score what a selector removed.

``synthetic_polyp_seg`` is the companion downstream segmentation set (polyp masks) with a
mild domain shift between its ``train`` and ``test`` splits (colour temperature, exposure,
noise), like moving between centres.
"""
from __future__ import annotations

import functools
from typing import Any, Mapping

import numpy as np

from delbench.sdk import Dataset, check_int, check_number, check_split, hookimpl

KINDS = ("core", "near_duplicate", "invalid")

# Stream identifiers keep the random streams of the two datasets and of the roles inside
# them independent: changing one never shifts another.
_STREAM_FRAME, _STREAM_SCENE, _STREAM_DOWNSTREAM, _STREAM_EPISODE, _STREAM_INVALID_TYPE = 1, 2, 3, 4, 14


def _uniform(seed: int, stream: int, index: np.ndarray) -> np.ndarray:
    """Counter-based uniforms in [0, 1) (splitmix64), vectorised over ``index``."""
    with np.errstate(over="ignore"):
        x = (np.asarray(index, dtype=np.uint64) + np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)
             + np.uint64(stream) * np.uint64(0xBF58476D1CE4E5B9))
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    coords = (np.arange(size, dtype=np.float32) + 0.5) / size
    return np.meshgrid(coords, coords, indexing="ij")


def render_tissue(rng: np.random.Generator, size: int, *, polyps: int,
                  shift: dict[str, float] | None = None, polyp_contrast: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """One endoscopy-like scene: mucosa texture, vessels, specular spots and polyps.

    ``polyp_contrast`` scales how far a polyp's colour lies from the mucosa's (1: the default
    pinker, lighter polyps; 0: the mucosa's own colour, told apart only by shading, the missing
    vessels and the outline). Every random draw is the same at any value.
    Returns float32 RGB in [0, 255] (size × size × 3) and the polyp mask (uint8, {0, 1}).
    """
    yy, xx = _grid(size)
    base = np.array([rng.uniform(170, 225), rng.uniform(75, 120), rng.uniform(65, 105)], np.float32)
    # low-frequency folds of the mucosa
    shade = np.zeros((size, size), np.float32)
    for _ in range(6):
        fx, fy = rng.uniform(0.5, 3.0, size=2)
        phase = rng.uniform(0, 2 * np.pi)
        shade += rng.uniform(0.05, 0.15) * np.sin(2 * np.pi * (fx * xx + fy * yy) + phase)
    image = base[None, None, :] * (1.0 + shade[..., None])
    # vessels: thin dark-red sinusoidal curves
    for _ in range(rng.integers(2, 6)):
        amp, freq, phase, offset = rng.uniform(0.03, 0.15), rng.uniform(1, 4), rng.uniform(0, 6.3), rng.uniform(0.1, 0.9)
        along_x = rng.random() < 0.5
        u, v = (xx, yy) if along_x else (yy, xx)
        dist = np.abs(v - (offset + amp * np.sin(2 * np.pi * freq * u + phase)))
        width = rng.uniform(0.004, 0.012)
        vessel = np.exp(-(dist / width) ** 2)[..., None]
        image = image * (1 - 0.45 * vessel) + vessel * np.array([120, 20, 30], np.float32) * 0.45
    mask = np.zeros((size, size), np.uint8)
    for _ in range(polyps):
        cy, cx = rng.uniform(0.25, 0.75, size=2)
        ry, rx = rng.uniform(0.08, 0.2, size=2)
        angle = rng.uniform(0, np.pi)
        dy, dx = yy - cy, xx - cx
        u = (dx * np.cos(angle) + dy * np.sin(angle)) / rx
        v = (-dx * np.sin(angle) + dy * np.cos(angle)) / ry
        r2 = u ** 2 + v ** 2
        inside = r2 <= 1.0
        mask |= inside.astype(np.uint8)
        dome = np.clip(1.0 - r2, 0, 1)[..., None]
        colour = np.array([rng.uniform(200, 245), rng.uniform(120, 165), rng.uniform(100, 140)], np.float32)
        if polyp_contrast != 1.0:  # only then: the default keeps every earlier image bit for bit
            colour = base + np.float32(polyp_contrast) * (colour - base)
        lit = colour * (0.75 + 0.35 * np.clip(1 - ((dx - 0.3 * rx) ** 2 + (dy - 0.3 * ry) ** 2) / (rx * ry * 2), 0, 1))[..., None]
        image = np.where(inside[..., None], lit * (0.8 + 0.2 * dome), image)
    # specular highlights typical of wet mucosa
    for _ in range(rng.integers(1, 4)):
        cy, cx = rng.uniform(0.1, 0.9, size=2)
        spot = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * rng.uniform(0.005, 0.015) ** 2))
        image = image + spot[..., None] * 200.0
    if shift:
        image = image * np.array(shift.get("colour", (1.0, 1.0, 1.0)), np.float32) * shift.get("gain", 1.0)
    return np.clip(image, 0, 255), mask


def vignette(size: int) -> np.ndarray:
    """The dark circular border of an endoscope's field of view (multiplier, H × W × 1)."""
    yy, xx = _grid(size)
    r = np.sqrt((yy - 0.5) ** 2 + (xx - 0.5) ** 2) / 0.5
    return np.clip((1.12 - r) / 0.2, 0.0, 1.0)[..., None].astype(np.float32)


def _motion_blur(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A fast camera move: the frame smeared along one direction over a quarter to half of its
    width, so mucosa and polyps turn into streaks of their mean colour."""
    length = int(rng.integers(max(3, image.shape[0] // 4), max(4, image.shape[0] // 2) + 1))
    angle = rng.uniform(0, np.pi)
    out = np.zeros_like(image)
    for step in range(length):
        offset = step - length // 2
        out += np.roll(image, (int(round(offset * np.sin(angle))), int(round(offset * np.cos(angle)))), axis=(0, 1))
    return out / length


def _bubbles(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Air bubbles and froth filling the view: bright rings over a milky film, the mucosa seen
    only in the gaps."""
    size = image.shape[0]
    yy, xx = _grid(size)
    out = 0.5 * image + 0.5 * 225.0
    for _ in range(rng.integers(14, 26)):
        cy, cx = rng.uniform(0, 1, size=2)
        radius = rng.uniform(0.06, 0.2)
        d = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2) / radius
        ring = np.exp(-((d - 1.0) / 0.15) ** 2)[..., None]
        fill = (d < 1.0)[..., None]
        out = np.where(fill, 0.4 * out + 0.6 * 235.0, out) + 120.0 * ring
    return out


def _dark(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Under-exposed: a faint trace of the tissue under amplified sensor noise."""
    return image * rng.uniform(0.04, 0.12) + rng.normal(0, rng.uniform(2, 5), image.shape)


def _overexposed(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Over-exposed: most of the frame clips to white; only the darkest structure (vessels,
    folds) survives at the edges of the glare."""
    return image * rng.uniform(2.2, 3.5) + rng.uniform(60, 120)


def _out_of_body(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Outside the patient: a defocused room, drape, glove or gown (broad soft shapes on a
    gradient, a lamp), no mucosa; never a blank frame."""
    yy, xx = _grid(image.shape[0])
    top, bottom = rng.uniform(40, 230, size=3), rng.uniform(40, 230, size=3)
    angle = rng.uniform(0, np.pi)
    t = np.clip(0.5 + (xx - 0.5) * np.cos(angle) + (yy - 0.5) * np.sin(angle), 0, 1)[..., None]
    out = (top * (1 - t) + bottom * t).astype(np.float32)
    for _ in range(rng.integers(2, 5)):
        cy, cx = rng.uniform(0, 1, size=2)
        ry, rx = rng.uniform(0.1, 0.45, size=2)
        soft = np.clip(1.5 - (((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2), 0, 1)[..., None]
        out = out * (1 - soft) + soft * rng.uniform(20, 245, size=3)
    lamp_y, lamp_x = rng.uniform(0, 1, size=2)
    return out + 120 * np.exp(-((yy - lamp_y) ** 2 + (xx - lamp_x) ** 2) / 0.02)[..., None]


#: invalid type → how a frame of that type is rendered from the scene (order fixes the type
#: ids). Each looks as it does in real endoscopy video, never blank, and carries little of the
#: tissue: the premise of data-effective learning is that such frames teach nothing useful.
CORRUPTIONS = {
    "motion_blur": _motion_blur,
    "dark": _dark,
    "overexposed": _overexposed,
    "bubbles": _bubbles,
    "out_of_body": _out_of_body,
}
INVALID_TYPES = tuple(CORRUPTIONS)


def _frame_name(position: int) -> str:
    """The last part of a frame's id: its position in its sequence."""
    return f"frame{position:05d}"


class SyntheticEndoscopy(Dataset):
    """Endoscopy-like video frames generated on demand, with planted redundancy."""

    name = "synthetic_endoscopy"
    # 2: out-of-body frames show a defocused room (were one flat colour); dark ones are noisy.
    # 3: motion blur smears over a quarter to half of the frame (was a tenth to a quarter) and
    #    bubbles fill the view over a milky film: v2's kept most of the tissue, polyps included.
    version = "3"
    description = ("Procedural endoscopy videos (near-duplicate frames, planted invalid frames, "
                   "polyps with masks); lazy, any size, with ground-truth frame kinds")
    roles = ("pool",)
    splits = ("all",)

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> None:
        check_split(params, cls.splits)
        check_int(params, "image_size", 16)
        for key in ("num_frames", "frames_per_sequence", "scene_length", "invalid_episode_length"):
            check_int(params, key, 1)
        check_number(params, "invalid_fraction", 0.0, 1.0, high_open=True)
        check_number(params, "polyp_scene_fraction", 0.0, 1.0)
        check_number(params, "polyp_contrast", 0.0, 1.0)
        check_int(params, "seed", 0)

    def __init__(self, *, split: str = "all", image_size: int = 64, num_frames: int = 4000,
                 frames_per_sequence: int = 200, scene_length: int = 25,
                 invalid_fraction: float = 0.5, invalid_episode_length: int = 10,
                 polyp_scene_fraction: float = 0.5, polyp_contrast: float = 1.0, seed: int = 0) -> None:
        self.image_size = int(image_size)
        self.num_frames = int(num_frames)
        self.frames_per_sequence = int(frames_per_sequence)
        self.scene_length = int(scene_length)
        self.invalid_fraction = float(invalid_fraction)
        self.invalid_episode_length = int(invalid_episode_length)
        self.polyp_scene_fraction = float(polyp_scene_fraction)
        self.polyp_contrast = float(polyp_contrast)
        self.seed = int(seed)
        self._margin = max(2, self.image_size // 8)
        self._vignette = vignette(self.image_size)
        self._scene = functools.lru_cache(maxsize=64)(self._render_scene)

    def __len__(self) -> int:
        return self.num_frames

    # --- ground truth, vectorised over frame indices --------------------------------------
    def _layout(self, index: np.ndarray) -> dict[str, np.ndarray]:
        index = np.asarray(index, dtype=np.int64)
        sequence = index // self.frames_per_sequence
        position = index % self.frames_per_sequence
        scenes_per_sequence = -(-self.frames_per_sequence // self.scene_length)
        scene = sequence * scenes_per_sequence + position // self.scene_length
        # Invalid frames come in episodes (a blur, bubble or out-of-body stretch lasts a
        # while in real video): every frame of an episode shares its type and settings.
        episodes_per_sequence = -(-self.frames_per_sequence // self.invalid_episode_length)
        episode = sequence * episodes_per_sequence + position // self.invalid_episode_length
        invalid = _uniform(self.seed, _STREAM_EPISODE, episode) < self.invalid_fraction
        invalid_type = (_uniform(self.seed, _STREAM_INVALID_TYPE, episode) * len(INVALID_TYPES)).astype(np.int64)
        return {"sequence": sequence, "position": position, "scene": scene, "episode": episode,
                "invalid": invalid, "invalid_type": invalid_type}

    def metadata(self) -> dict[str, np.ndarray]:
        """Ground-truth columns ``sequence_id``, ``scene_id``, ``kind``, ``invalid_type``.

        Computed once per instance (every parameter they depend on is fixed at construction)
        and returned as a new dict of the same read-only arrays on each call.
        """
        return dict(self._ground_truth)

    @functools.cached_property
    def _ground_truth(self) -> dict[str, np.ndarray]:
        layout = self._layout(np.arange(self.num_frames))
        invalid = layout["invalid"]
        # the core frame of a scene is its first valid frame; the other valid ones repeat it
        scene = layout["scene"]
        valid_index = np.flatnonzero(~invalid)
        _, first = np.unique(scene[valid_index], return_index=True)
        core = np.zeros(self.num_frames, bool)
        core[valid_index[first]] = True
        kind = np.where(invalid, "invalid", np.where(core, "core", "near_duplicate"))
        invalid_type = np.full(self.num_frames, "", dtype=object)
        invalid_type[invalid] = np.asarray(INVALID_TYPES, dtype=object)[layout["invalid_type"][invalid]]
        columns = {"sequence_id": layout["sequence"], "scene_id": scene, "kind": kind.astype(object),
                   "invalid_type": invalid_type}
        for column in columns.values():  # shared by every caller: nobody may write into them
            column.flags.writeable = False
        return columns

    # --- rendering ----------------------------------------------------------------------
    def _render_scene(self, scene: int) -> tuple[np.ndarray, np.ndarray, float]:
        rng = np.random.default_rng([self.seed, _STREAM_SCENE, scene])
        polyps = int(rng.integers(1, 3)) if rng.random() < self.polyp_scene_fraction else 0
        canvas, mask = render_tissue(rng, self.image_size + 2 * self._margin, polyps=polyps,
                                     polyp_contrast=self.polyp_contrast)
        return canvas, mask, float(rng.uniform(0, 2 * np.pi))

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = int(index)
        if not 0 <= index < self.num_frames:
            raise IndexError(f"{self.name}: index {index} out of range [0, {self.num_frames})")
        layout = {k: v.item() for k, v in self._layout(np.array([index])).items()}
        canvas, canvas_mask, phase = self._scene(int(layout["scene"]))
        # slow camera drift inside the scene: neighbouring frames overlap almost entirely
        t = (layout["position"] % self.scene_length) / self.scene_length
        m, s = self._margin, self.image_size
        dy = int(round(m + m * 0.35 * np.sin(phase + 2 * np.pi * t)))
        dx = int(round(m + m * 0.35 * np.cos(phase + 2 * np.pi * t)))
        frame = canvas[dy:dy + s, dx:dx + s]
        mask = canvas_mask[dy:dy + s, dx:dx + s].copy()
        rng = np.random.default_rng([self.seed, _STREAM_FRAME, index])
        frame = frame * rng.uniform(0.97, 1.03)
        if layout["invalid"]:
            episode_rng = np.random.default_rng([self.seed, _STREAM_EPISODE, layout["episode"]])
            frame = CORRUPTIONS[INVALID_TYPES[layout["invalid_type"]]](frame, episode_rng)
            mask[:] = 0  # nothing usable to annotate in an invalid frame
        frame = frame * self._vignette + rng.normal(0, 3.0, frame.shape)
        return {"image": np.clip(frame, 0, 255).astype(np.uint8), "mask": mask,
                "id": self._frame_id(layout["sequence"], layout["position"])}

    def item_id(self, index: int) -> str:
        layout = self._layout(np.array([int(index)]))
        return self._frame_id(int(layout["sequence"][0]), int(layout["position"][0]))

    def item_ids(self) -> list[str]:
        """Every frame's id from the frame layout alone (no frame is rendered; 1M ids ≈ 0.3 s)."""
        frames = [_frame_name(position) for position in range(self.frames_per_sequence)]
        prefixes = [self._sequence_prefix(sequence) for sequence in range(-(-self.num_frames // self.frames_per_sequence))]
        ids = [prefix + frame for prefix in prefixes for frame in frames]
        return ids[:self.num_frames]

    def _frame_id(self, sequence: int, position: int) -> str:
        return self._sequence_prefix(sequence) + _frame_name(position)

    def _sequence_prefix(self, sequence: int) -> str:
        return f"{self.name}/seq{sequence:05d}/"


class SyntheticPolypSegmentation(Dataset):
    """Downstream polyp segmentation images with masks; ``test`` is domain-shifted."""

    name = "synthetic_polyp_seg"
    version = "1"
    description = "Procedural polyp segmentation set (train/test, mild domain shift on test)"
    roles = ("segmentation",)
    splits = ("train", "test")
    num_classes = 2
    class_names = ("background", "polyp")

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> None:
        check_split(params, cls.splits)
        check_int(params, "image_size", 16)
        check_int(params, "num_train", 1)
        check_int(params, "num_test", 1)
        check_number(params, "polyp_contrast", 0.0, 1.0)
        check_int(params, "seed", 0)

    def __init__(self, *, split: str = "train", image_size: int = 64, num_train: int = 256,
                 num_test: int = 128, polyp_contrast: float = 1.0, seed: int = 0) -> None:
        self.split = split
        self.polyp_contrast = float(polyp_contrast)
        self.image_size = int(image_size)
        self.length = int(num_train if split == "train" else num_test)
        self.seed = int(seed)
        self._offset = 0 if split == "train" else 1_000_000
        self._vignette = vignette(self.image_size)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = int(index)
        if not 0 <= index < self.length:
            raise IndexError(f"{self.name}: index {index} out of range [0, {self.length})")
        rng = np.random.default_rng([self.seed, _STREAM_DOWNSTREAM, self._offset + index])
        shift = None
        if self.split == "test":  # another centre: warmer light, other exposure
            shift = {"colour": (1.0, 1.08, 1.15), "gain": 0.85}
        image, mask = render_tissue(rng, self.image_size, polyps=int(rng.integers(1, 3)), shift=shift,
                                    polyp_contrast=self.polyp_contrast)
        noise = 3.0 if self.split == "train" else 6.0
        image = image * self._vignette + rng.normal(0, noise, image.shape)
        return {"image": np.clip(image, 0, 255).astype(np.uint8), "mask": mask, "id": self.item_id(index)}

    def item_id(self, index: int) -> str:
        return f"{self.name}/{self.split}/{int(index):06d}"


@hookimpl
def delbench_register_datasets() -> list[type]:
    return [SyntheticEndoscopy, SyntheticPolypSegmentation]
