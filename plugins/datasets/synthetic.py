"""Procedurally generated endoscopy-like data: the embedded default pool and a downstream set.

``synthetic_endoscopy`` imitates the data-effective-learning problem as real endoscopy pools
pose it: videos from several acquisition centres of unequal size, each centre with its own
camera and light (colour cast, illumination, texture scale, vignetting, sensor noise); scenes
of heavy-tailed duration, so a few long, nearly static stretches hold many frames and most
scenes are short; and a configurable share of invalid frames (motion blur, too dark,
over-exposed, bubbles/glare, out-of-body) planted in episodes of ``invalid_episode_length``
frames that share their corruption, as in real video. Every frame is generated on demand from
``(seed, index)``: nothing is stored, any size works, and the ground truth (``centre_id``,
``sequence_id``, ``scene_id``, ``kind``, ``invalid_type``) is known for every frame, so a
report can score what a selector removed and what it covered.

``synthetic_polyp_seg`` is the companion downstream segmentation set (polyp masks), seen
through one centre's camera (``centre``), or, without one, with a mild domain shift between
its ``train`` and ``test`` splits (colour temperature, exposure, noise).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from delbench.sdk import ConfigError, Dataset, check_int, check_number, check_split, hookimpl

KINDS = ("core", "near_duplicate", "invalid")

# Stream identifiers keep the random streams of the two datasets and of the roles inside
# them independent: changing one never shifts another.
_STREAM_FRAME, _STREAM_SCENE, _STREAM_DOWNSTREAM, _STREAM_EPISODE, _STREAM_INVALID_TYPE = 1, 2, 3, 4, 14
_STREAM_LAYOUT, _STREAM_LOOK = 5, 6


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
                  shift: dict[str, float] | None = None, polyp_contrast: float = 1.0,
                  detail: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """One endoscopy-like scene: mucosa texture, vessels, specular spots and polyps.

    ``polyp_contrast`` scales how far a polyp's colour lies from the mucosa's (1: the default
    pinker, lighter polyps; 0: the mucosa's own colour, told apart only by shading, the missing
    vessels and the outline). ``detail`` is the texture scale of a centre's optics: above 1 the
    folds, vessels and spots are finer (a wider view), below 1 coarser (a close-up capsule
    view); polyps keep their size. Every random draw is the same at any value of either.
    Returns float32 RGB in [0, 255] (size × size × 3) and the polyp mask (uint8, {0, 1}).
    """
    yy, xx = _grid(size)
    # the texture's own coordinates, zoomed about the centre of the view
    ty, tx = (yy, xx) if detail == 1.0 else (0.5 + (yy - 0.5) * np.float32(detail), 0.5 + (xx - 0.5) * np.float32(detail))
    base = np.array([rng.uniform(170, 225), rng.uniform(75, 120), rng.uniform(65, 105)], np.float32)
    # low-frequency folds of the mucosa
    shade = np.zeros((size, size), np.float32)
    for _ in range(6):
        fx, fy = rng.uniform(0.5, 3.0, size=2)
        phase = rng.uniform(0, 2 * np.pi)
        shade += rng.uniform(0.05, 0.15) * np.sin(2 * np.pi * (fx * tx + fy * ty) + phase)
    image = base[None, None, :] * (1.0 + shade[..., None])
    # vessels: thin dark-red sinusoidal curves
    for _ in range(rng.integers(2, 6)):
        amp, freq, phase, offset = rng.uniform(0.03, 0.15), rng.uniform(1, 4), rng.uniform(0, 6.3), rng.uniform(0.1, 0.9)
        along_x = rng.random() < 0.5
        u, v = (tx, ty) if along_x else (ty, tx)
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
        spot = np.exp(-((ty - cy) ** 2 + (tx - cx) ** 2) / (2 * rng.uniform(0.005, 0.015) ** 2))
        image = image + spot[..., None] * 200.0
    if shift:
        image = image * np.array(shift.get("colour", (1.0, 1.0, 1.0)), np.float32) * shift.get("gain", 1.0)
    return np.clip(image, 0, 255), mask


def vignette(size: int, radius: float = 1.12) -> np.ndarray:
    """The dark circular border of an endoscope's field of view (multiplier, H × W × 1):
    light falls off over the last fifth of ``radius`` (in half-widths of the frame; below 1
    the corners and edges are black, as in a capsule's round view)."""
    yy, xx = _grid(size)
    r = np.sqrt((yy - 0.5) ** 2 + (xx - 0.5) ** 2) / 0.5
    return np.clip((radius - r) / 0.2, 0.0, 1.0)[..., None].astype(np.float32)


@dataclass(frozen=True)
class CentreLook:
    """How one acquisition centre's camera and light render the same tissue."""

    colour: tuple[float, float, float] = (1.0, 1.0, 1.0)  #: RGB gains of light and sensor
    gain: float = 1.0  #: illumination
    detail: float = 1.0  #: texture scale (:func:`render_tissue`)
    vignette: float = 1.12  #: radius of the field of view (:func:`vignette`)
    noise: float = 3.0  #: sensor noise, standard deviation in grey levels

    @property
    def neutral_colour(self) -> bool:
        return self.colour == (1.0, 1.0, 1.0) and self.gain == 1.0

    def light(self, image: np.ndarray) -> np.ndarray:
        """``image`` under this centre's colour cast and illumination."""
        if self.neutral_colour:  # only then: centre 0 keeps every earlier image bit for bit
            return image
        return image * (np.array(self.colour, np.float32) * np.float32(self.gain))


#: The default centres mirror the pre-training pool of the MedDEL benchmark (DataDEL): a
#: colonoscopy hospital (HyperKvasir, 110,079 frames, one centre), a capsule endoscope
#: (Kvasir-Capsule, 47,238 frames, one centre) and the two centres of GastroVision (8,000
#: frames): 66.6 %, 28.6 % and 2.4 % + 2.4 % of its 165,317 frames (:data:`CENTRE_SHARES`).
#: Their looks are ours: centre 0 is the neutral look of earlier versions; the capsule has a
#: warm, greenish cast, dimmer light, a coarser close-up texture, a round field of view and a
#: noisier sensor; the two small centres have cold and magenta casts, other exposure and finer
#: texture. A centre beyond these gets a look drawn from its number (:func:`centre_look`).
CENTRE_LOOKS = (
    CentreLook(),
    CentreLook(colour=(1.0, 1.02, 0.72), gain=0.85, detail=0.7, vignette=0.98, noise=6.0),
    CentreLook(colour=(0.82, 0.97, 1.22), gain=1.08, detail=1.35, vignette=1.25, noise=2.0),
    CentreLook(colour=(1.15, 0.82, 1.05), gain=0.78, detail=1.6, vignette=1.05, noise=4.5),
)
CENTRE_SHARES = (110_079 / 165_317, 47_238 / 165_317, 4_000 / 165_317, 4_000 / 165_317)


def centre_look(centre: int) -> CentreLook:
    """Centre ``centre``'s look: :data:`CENTRE_LOOKS` for the first ones, then drawn from the
    centre's number alone (never from a pool's seed), so a pool and a downstream set of the
    same centre always share it."""
    if centre < len(CENTRE_LOOKS):
        return CENTRE_LOOKS[centre]
    rng = np.random.default_rng([_STREAM_LOOK, centre])
    return CentreLook(colour=tuple(float(c) for c in rng.uniform(0.8, 1.2, 3)), gain=float(rng.uniform(0.75, 1.15)),
                      detail=float(rng.uniform(0.7, 1.6)), vignette=float(rng.uniform(0.98, 1.25)),
                      noise=float(rng.uniform(2.0, 6.0)))


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


@dataclass(frozen=True)
class _Layout:
    """Where the scenes and videos of a pool lie, scene by scene (a pool of n frames has far
    fewer scenes, so every per-frame column is computed from these on demand)."""

    scene_start: np.ndarray  #: first frame of each scene, increasing; scene ids are positions here
    scene_period: np.ndarray  #: frames over which a scene's camera drift makes one cycle
    scene_centre: np.ndarray  #: centre of each scene
    scene_video: np.ndarray  #: video (sequence id) of each scene
    video_start: np.ndarray  #: first frame of each video
    episodes_per_video: int  #: a bound on the invalid episodes of one video, for unique episode ids

    def frames(self, index: np.ndarray, episode_length: int) -> dict[str, np.ndarray]:
        scene = np.searchsorted(self.scene_start, index, side="right") - 1
        sequence = self.scene_video[scene]
        position = index - self.video_start[sequence]
        # Invalid frames come in episodes (a blur, bubble or out-of-body stretch lasts a
        # while in real video): every frame of an episode shares its type and settings.
        episode = sequence * self.episodes_per_video + position // episode_length
        return {"scene": scene, "sequence": sequence, "position": position, "episode": episode,
                "centre": self.scene_centre[scene], "offset": index - self.scene_start[scene],
                "period": self.scene_period[scene]}


class SyntheticEndoscopy(Dataset):
    """Endoscopy-like video frames from several centres, generated on demand, with planted
    redundancy (heavy-tailed scenes) and invalid episodes.

    Layout: the pool's frames are shared out between centres by ``centre_shares`` (default
    :data:`CENTRE_SHARES`, the MedDEL pre-training pool's four centres); each centre's frames
    are cut into scenes whose lengths are drawn from a log-normal distribution with median
    ``scene_length_median`` and log-scale ``scene_length_sigma`` (capped at
    ``scene_length_max``), and consecutive scenes into videos of about
    ``frames_per_sequence`` frames (a video ends at the first scene boundary past that). Real
    endoscopy video is like this: a capsule lies still or rocks back and forth for minutes
    (50,000–80,000 frames per examination at about 2 frames/s, many of them repeats of one
    view), a colonoscope lingers on a finding, and most views pass in a few frames. With the
    defaults (median 6, sigma 1.4) about 5 % of the scenes hold 40 % of the frames, so a
    uniformly random subset is dominated by the longest scenes and the biggest centre.
    ``scene_length=L`` instead cuts every video into scenes of exactly L frames (the layout of
    versions 1–3: with ``centre_shares=[1]`` such a pool is version 3's, frame for frame).
    Inside a scene the camera drifts slowly over one cycle, so a long scene is nearly static.

    Ground truth (:meth:`metadata`): ``centre_id``, ``sequence_id``, ``scene_id``, ``kind``
    (``core``: the first valid frame of its scene; ``near_duplicate``: its other valid frames;
    ``invalid``) and ``invalid_type``.
    """

    name = "synthetic_endoscopy"
    # 2: out-of-body frames show a defocused room (were one flat colour); dark ones are noisy.
    # 3: motion blur smears over a quarter to half of the frame (was a tenth to a quarter) and
    #    bubbles fill the view over a milky film: v2's kept most of the tissue, polyps included.
    # 4: centres with their own looks and heavy-tailed scene lengths by default (`centre_id`);
    #    `scene_length=L, centre_shares=[1]` is version 3's pool.
    version = "4"
    description = ("Procedural endoscopy videos from several centres (heavy-tailed near-duplicate scenes, "
                   "planted invalid frames, polyps with masks); lazy, any size, with ground-truth frame kinds")
    roles = ("pool",)
    splits = ("all",)

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> None:
        check_split(params, cls.splits)
        check_int(params, "image_size", 16)
        for key in ("num_frames", "frames_per_sequence", "invalid_episode_length", "scene_length_max"):
            check_int(params, key, 1)
        check_int(params, "scene_length", 1, allow_none=True)
        check_number(params, "scene_length_median", 1.0, None)
        check_number(params, "scene_length_sigma", 0.0, 4.0)
        check_number(params, "invalid_fraction", 0.0, 1.0, high_open=True)
        check_number(params, "polyp_scene_fraction", 0.0, 1.0)
        check_number(params, "polyp_contrast", 0.0, 1.0)
        check_int(params, "seed", 0)
        shares = params.get("centre_shares")
        if shares is not None:
            ok = isinstance(shares, (list, tuple)) and len(shares) > 0 and all(
                isinstance(x, (int, float)) and not isinstance(x, bool) and x > 0 for x in shares)
            if not ok:
                raise ConfigError(f"centre_shares must be a non-empty list of positive numbers, got {shares!r}")

    def __init__(self, *, split: str = "all", image_size: int = 64, num_frames: int = 4000,
                 frames_per_sequence: int = 200, scene_length: int | None = None,
                 scene_length_median: float = 6.0, scene_length_sigma: float = 1.4, scene_length_max: int = 400,
                 centre_shares: Sequence[float] | None = None,
                 invalid_fraction: float = 0.5, invalid_episode_length: int = 10,
                 polyp_scene_fraction: float = 0.5, polyp_contrast: float = 1.0, seed: int = 0) -> None:
        self.image_size = int(image_size)
        self.num_frames = int(num_frames)
        self.frames_per_sequence = int(frames_per_sequence)
        self.scene_length = None if scene_length is None else int(scene_length)
        self.scene_length_median = float(scene_length_median)
        self.scene_length_sigma = float(scene_length_sigma)
        self.scene_length_max = int(scene_length_max)
        shares = np.asarray(CENTRE_SHARES if centre_shares is None else centre_shares, np.float64)
        self.centre_shares = tuple(float(x) for x in shares / shares.sum())
        self.invalid_fraction = float(invalid_fraction)
        self.invalid_episode_length = int(invalid_episode_length)
        self.polyp_scene_fraction = float(polyp_scene_fraction)
        self.polyp_contrast = float(polyp_contrast)
        self.seed = int(seed)
        self._margin = max(2, self.image_size // 8)
        self._looks = [centre_look(c) for c in range(len(self.centre_shares))]
        self._vignettes = {look.vignette: vignette(self.image_size, look.vignette) for look in self._looks}
        self._scene = functools.lru_cache(maxsize=64)(self._render_scene)

    def __len__(self) -> int:
        return self.num_frames

    # --- layout and ground truth --------------------------------------------------------
    def centre_sizes(self) -> np.ndarray:
        """Frames per centre: the shares of ``num_frames`` by largest remainder (ties to the
        lower centre), every centre at least one frame while there are frames enough."""
        exact = np.asarray(self.centre_shares) * self.num_frames
        sizes = np.floor(exact).astype(np.int64)
        order = np.lexsort((np.arange(sizes.size), -(exact - sizes)))
        sizes[order[:self.num_frames - sizes.sum()]] += 1
        return sizes

    @functools.cached_property
    def _layout(self) -> _Layout:
        if self.scene_length is not None:
            return self._fixed_layout()
        starts, periods, centres, videos, video_starts = [], [], [], [], []
        offset = 0
        rng = np.random.default_rng([self.seed, _STREAM_LAYOUT])
        for centre, size in enumerate(self.centre_sizes()):
            lengths = np.empty(0, np.int64)
            while lengths.sum() < size:  # heavy-tailed scene lengths until the centre is full
                draw = np.exp(rng.normal(np.log(self.scene_length_median), self.scene_length_sigma, 1024))
                lengths = np.concatenate([lengths, np.clip(np.round(draw), 1, self.scene_length_max).astype(np.int64)])
            lengths = lengths[:np.searchsorted(np.cumsum(lengths), size) + 1]
            lengths[-1] -= lengths.sum() - size
            local = np.concatenate([[0], np.cumsum(lengths)[:-1]])
            # a video ends at the first scene boundary at or past frames_per_sequence
            video = np.zeros(lengths.size, np.int64)
            begun = 0
            for j in range(1, lengths.size):
                video[j] = video[j - 1]
                if local[j] - begun >= self.frames_per_sequence:
                    video[j] += 1
                    begun = local[j]
            first = len(video_starts)
            video_starts.extend(offset + local[np.r_[True, video[1:] != video[:-1]]])
            starts.append(offset + local)
            periods.append(lengths)
            centres.append(np.full(lengths.size, centre, np.int64))
            videos.append(first + video)
            offset += size
        video_start = np.asarray(video_starts, np.int64)
        longest = int(np.diff(np.r_[video_start, self.num_frames]).max(initial=1))
        return _Layout(np.concatenate(starts), np.concatenate(periods), np.concatenate(centres),
                       np.concatenate(videos), video_start, -(-longest // self.invalid_episode_length))

    def _fixed_layout(self) -> _Layout:
        """Every video cut into scenes of ``scene_length`` frames, centres one after another."""
        starts, centres, videos, video_starts = [], [], [], []
        offset = 0
        for centre, size in enumerate(self.centre_sizes()):
            local_videos = np.arange(0, size, self.frames_per_sequence)
            for begin in local_videos:
                length = min(self.frames_per_sequence, size - begin)
                scene_starts = offset + begin + np.arange(0, length, self.scene_length)
                starts.append(scene_starts)
                centres.append(np.full(scene_starts.size, centre, np.int64))
                videos.append(np.full(scene_starts.size, len(video_starts), np.int64))
                video_starts.append(offset + begin)
            offset += size
        start = np.concatenate(starts)
        return _Layout(start, np.full(start.size, self.scene_length, np.int64), np.concatenate(centres),
                       np.concatenate(videos), np.asarray(video_starts, np.int64),
                       -(-self.frames_per_sequence // self.invalid_episode_length))

    def _frames(self, index: np.ndarray) -> dict[str, np.ndarray]:
        """Every ground-truth fact of the frames ``index``, vectorised."""
        frames = self._layout.frames(np.asarray(index, dtype=np.int64), self.invalid_episode_length)
        episode = frames["episode"]
        frames["invalid"] = _uniform(self.seed, _STREAM_EPISODE, episode) < self.invalid_fraction
        frames["invalid_type"] = (_uniform(self.seed, _STREAM_INVALID_TYPE, episode) * len(INVALID_TYPES)).astype(np.int64)
        return frames

    def metadata(self) -> dict[str, np.ndarray]:
        """Ground-truth columns ``centre_id``, ``sequence_id``, ``scene_id``, ``kind``,
        ``invalid_type``.

        Computed once per instance (every parameter they depend on is fixed at construction)
        and returned as a new dict of the same read-only arrays on each call.
        """
        return dict(self._ground_truth)

    @functools.cached_property
    def _ground_truth(self) -> dict[str, np.ndarray]:
        frames = self._frames(np.arange(self.num_frames))
        invalid = frames["invalid"]
        # the core frame of a scene is its first valid frame; the other valid ones repeat it
        scene = frames["scene"]
        valid_index = np.flatnonzero(~invalid)
        _, first = np.unique(scene[valid_index], return_index=True)
        core = np.zeros(self.num_frames, bool)
        core[valid_index[first]] = True
        kind = np.where(invalid, "invalid", np.where(core, "core", "near_duplicate"))
        invalid_type = np.full(self.num_frames, "", dtype=object)
        invalid_type[invalid] = np.asarray(INVALID_TYPES, dtype=object)[frames["invalid_type"][invalid]]
        columns = {"centre_id": frames["centre"], "sequence_id": frames["sequence"], "scene_id": scene,
                   "kind": kind.astype(object), "invalid_type": invalid_type}
        for column in columns.values():  # shared by every caller: nobody may write into them
            column.flags.writeable = False
        return columns

    # --- rendering ----------------------------------------------------------------------
    def _render_scene(self, scene: int) -> tuple[np.ndarray, np.ndarray, float]:
        rng = np.random.default_rng([self.seed, _STREAM_SCENE, scene])
        polyps = int(rng.integers(1, 3)) if rng.random() < self.polyp_scene_fraction else 0
        look = self._looks[int(self._layout.scene_centre[scene])]
        canvas, mask = render_tissue(rng, self.image_size + 2 * self._margin, polyps=polyps,
                                     polyp_contrast=self.polyp_contrast, detail=look.detail)
        return canvas, mask, float(rng.uniform(0, 2 * np.pi))

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = int(index)
        if not 0 <= index < self.num_frames:
            raise IndexError(f"{self.name}: index {index} out of range [0, {self.num_frames})")
        frame_facts = {k: v.item() for k, v in self._frames(np.array([index])).items()}
        canvas, canvas_mask, phase = self._scene(int(frame_facts["scene"]))
        # slow camera drift over one cycle of the scene: neighbouring frames overlap almost
        # entirely, and a long scene is nearly static
        t = (frame_facts["offset"] % frame_facts["period"]) / frame_facts["period"]
        m, s = self._margin, self.image_size
        dy = int(round(m + m * 0.35 * np.sin(phase + 2 * np.pi * t)))
        dx = int(round(m + m * 0.35 * np.cos(phase + 2 * np.pi * t)))
        frame = canvas[dy:dy + s, dx:dx + s]
        mask = canvas_mask[dy:dy + s, dx:dx + s].copy()
        rng = np.random.default_rng([self.seed, _STREAM_FRAME, index])
        frame = frame * rng.uniform(0.97, 1.03)
        if frame_facts["invalid"]:
            episode_rng = np.random.default_rng([self.seed, _STREAM_EPISODE, frame_facts["episode"]])
            frame = CORRUPTIONS[INVALID_TYPES[frame_facts["invalid_type"]]](frame, episode_rng)
            mask[:] = 0  # nothing usable to annotate in an invalid frame
        look = self._looks[frame_facts["centre"]]
        frame = look.light(frame) * self._vignettes[look.vignette] + rng.normal(0, look.noise, frame.shape)
        return {"image": np.clip(frame, 0, 255).astype(np.uint8), "mask": mask,
                "id": self._frame_id(frame_facts["sequence"], frame_facts["position"])}

    def item_id(self, index: int) -> str:
        frames = self._layout.frames(np.array([int(index)]), self.invalid_episode_length)
        return self._frame_id(int(frames["sequence"][0]), int(frames["position"][0]))

    def item_ids(self) -> list[str]:
        """Every frame's id from the frame layout alone (no frame is rendered; 1M ids ≈ 0.3 s)."""
        layout = self._layout
        lengths = np.diff(np.r_[layout.video_start, self.num_frames])
        frames = [_frame_name(position) for position in range(int(lengths.max(initial=0)))]
        return [self._sequence_prefix(video) + frame
                for video, length in enumerate(lengths.tolist()) for frame in frames[:length]]

    def _frame_id(self, sequence: int, position: int) -> str:
        return self._sequence_prefix(sequence) + _frame_name(position)

    def _sequence_prefix(self, sequence: int) -> str:
        return f"{self.name}/seq{sequence:05d}/"


class SyntheticPolypSegmentation(Dataset):
    """Downstream polyp segmentation images with masks.

    ``centre=c`` renders both splits through centre ``c``'s camera and light, the look its
    frames have in ``synthetic_endoscopy`` (:func:`centre_look`): the downstream set of one
    hospital. Without a centre, ``test`` is domain-shifted from ``train`` (warmer light, lower
    exposure, more noise), like moving between centres.
    """

    name = "synthetic_polyp_seg"
    # 2: `centre` (unset, every image is version 1's)
    version = "2"
    description = "Procedural polyp segmentation set (train/test) of one centre's look, or with a mild shift on test"
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
        check_int(params, "centre", 0, allow_none=True)
        check_number(params, "polyp_contrast", 0.0, 1.0)
        check_int(params, "seed", 0)

    def __init__(self, *, split: str = "train", image_size: int = 64, num_train: int = 256,
                 num_test: int = 128, centre: int | None = None, polyp_contrast: float = 1.0, seed: int = 0) -> None:
        self.split = split
        self.polyp_contrast = float(polyp_contrast)
        self.image_size = int(image_size)
        self.length = int(num_train if split == "train" else num_test)
        self.centre = None if centre is None else int(centre)
        self.seed = int(seed)
        self._offset = 0 if split == "train" else 1_000_000
        self._look = None if self.centre is None else centre_look(self.centre)
        self._vignette = vignette(self.image_size, 1.12 if self._look is None else self._look.vignette)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = int(index)
        if not 0 <= index < self.length:
            raise IndexError(f"{self.name}: index {index} out of range [0, {self.length})")
        rng = np.random.default_rng([self.seed, _STREAM_DOWNSTREAM, self._offset + index])
        shift = None
        if self.split == "test" and self._look is None:  # another centre: warmer light, other exposure
            shift = {"colour": (1.0, 1.08, 1.15), "gain": 0.85}
        image, mask = render_tissue(rng, self.image_size, polyps=int(rng.integers(1, 3)), shift=shift,
                                    polyp_contrast=self.polyp_contrast,
                                    detail=1.0 if self._look is None else self._look.detail)
        if self._look is None:
            noise = 3.0 if self.split == "train" else 6.0
        else:
            image, noise = self._look.light(image), self._look.noise
        image = image * self._vignette + rng.normal(0, noise, image.shape)
        return {"image": np.clip(image, 0, 255).astype(np.uint8), "mask": mask, "id": self.item_id(index)}

    def item_id(self, index: int) -> str:
        centre = "" if self.centre is None else f"c{self.centre}/"
        return f"{self.name}/{centre}{self.split}/{int(index):06d}"


@hookimpl
def delbench_register_datasets() -> list[type]:
    return [SyntheticEndoscopy, SyntheticPolypSegmentation]
