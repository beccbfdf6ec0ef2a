"""The ``timm_mae`` backbone: any timm ViT encoder with a masked-autoencoder objective.

The encoder is ``timm.create_model(model, img_size=..., patch_size=..., num_classes=0)``: its
patch embedding, positional embedding and blocks are used as they are. The MAE objective
(He et al., CVPR 2022) is added on top: keep a random 25 % of the patch tokens (``mask_ratio``
0.75), encode only those, let a light transformer decoder (timm ``Block``s) predict the pixels
of the masked patches, and take the mean squared error on per-patch normalised pixels
(``norm_pix_loss``) over masked patches only.

torch and timm are imported inside methods so that registering this plugin stays light.
"""
from __future__ import annotations

import contextlib
import inspect
import logging
import math
import pickle
import re
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from delbench.sdk import (Backbone, ConfigError, Dataset, DelbenchError, TrainingState, World, atomic_path, check_bool,
                          check_choice, check_int, check_known_keys, check_number, check_path, check_precision,
                          device_for, hookimpl, indices_digest, is_number, load_optimizer, load_state, one_line,
                          optimizer_tensors, process_group, sample_noise, save_state, world_from_env)

logger = logging.getLogger(__name__)


def _sincos_position_embedding(dim: int, grid: tuple[int, int]):
    """Fixed 2-D sine-cosine positional embedding (grid_h * grid_w, dim), as MAE's decoder uses."""
    import torch

    if dim % 4:
        raise ConfigError(f"decoder_dim must be divisible by 4, got {dim}")
    gy, gx = torch.meshgrid(torch.arange(grid[0], dtype=torch.float32),
                            torch.arange(grid[1], dtype=torch.float32), indexing="ij")
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float32) / (dim // 4))
    parts = []
    for coord in (gy.reshape(-1), gx.reshape(-1)):
        angles = coord[:, None] * omega[None, :]
        parts += [torch.sin(angles), torch.cos(angles)]
    return torch.cat(parts, dim=1)


def _constructor_defaults(cls: type) -> dict[str, Any]:
    """The constructor's keyword defaults: what an unset parameter will be."""
    return {name: p.default for name, p in inspect.signature(cls.__init__).parameters.items()
            if p.default is not inspect.Parameter.empty}


def _check_timm_encoder(model: str, image_size: int, patch_size: int | None,
                        model_kwargs: Mapping[str, Any]) -> None:
    """Refuse at load, not in every cell, what timm cannot build: an unknown model name (with
    close matches), a keyword its constructor does not take, an image size the patch size does
    not divide. The encoder is built on the meta device, so no weights are allocated."""
    import difflib

    import timm
    import torch

    if not timm.is_model(model):
        close = difflib.get_close_matches(model, timm.list_models(), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else " (timm.list_models() lists them)"
        raise ConfigError(f"model: timm has no model {model!r}{hint}")
    kwargs: dict[str, Any] = {**model_kwargs, "img_size": image_size, "num_classes": 0}
    if patch_size is not None:
        kwargs["patch_size"] = patch_size
    try:
        with torch.device("meta"):
            encoder = timm.create_model(model, pretrained=False, **kwargs)
    except TypeError as exc:  # a keyword the model's constructor does not take
        keyword = re.search(r"keyword argument '(\w+)'", str(exc))
        if keyword and keyword.group(1) not in model_kwargs:  # the harness's own img_size/patch_size
            raise ConfigError(f"model: {model!r} takes no {keyword.group(1)!r}; the MAE needs a ViT-style "
                              f"timm model") from None
        raise ConfigError(f"model_kwargs: timm cannot build {model!r} with {dict(model_kwargs)!r}: {exc}") from None
    except (RuntimeError, ValueError, AssertionError, NotImplementedError) as exc:
        if "meta" in str(exc):  # a model that computes on tensors while it is built: the run builds it for real
            return
        raise ConfigError(f"timm cannot build {model!r} with {kwargs!r}: {exc}") from None
    patch_embed = getattr(encoder, "patch_embed", None)
    if patch_embed is None or not hasattr(encoder, "blocks"):
        raise ConfigError(f"model: {model!r} is not a ViT-style timm model (needs patch_embed/blocks)")
    patch = patch_embed.patch_size[0]
    if image_size % patch:
        raise ConfigError(f"image_size: {image_size} is not a multiple of the patch size {patch} "
                          f"(give image_size={image_size // patch * patch or patch} or another patch_size)")


def _build_mae(model: str, image_size: int, patch_size: int | None, decoder_dim: int,
               decoder_depth: int, decoder_heads: int, drop_path_rate: float,
               model_kwargs: Mapping[str, Any]):
    import timm
    import torch
    from torch import nn
    from timm.models.vision_transformer import Block

    class MaskedAutoencoder(nn.Module):
        """timm ViT encoder + light decoder; forward returns the normalised-pixel MAE loss."""

        def __init__(self) -> None:
            super().__init__()
            kwargs: dict[str, Any] = {**model_kwargs, "img_size": image_size, "num_classes": 0,
                                      "drop_path_rate": drop_path_rate}
            if patch_size is not None:
                kwargs["patch_size"] = patch_size
            try:
                self.encoder = timm.create_model(model, pretrained=False, **kwargs)
            except RuntimeError as exc:  # timm's unknown-model error
                raise ConfigError(f"timm cannot build {model!r}: {exc}") from None
            enc = self.encoder
            if not hasattr(enc, "patch_embed") or not hasattr(enc, "blocks"):
                raise ConfigError(f"{model!r} is not a ViT-style timm model (needs patch_embed/blocks)")
            self.grid = tuple(enc.patch_embed.grid_size)
            self.patch = enc.patch_embed.patch_size[0]
            self.prefix = enc.num_prefix_tokens
            dim = enc.embed_dim
            self.decoder_embed = nn.Linear(dim, decoder_dim)
            self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
            self.register_buffer("decoder_pos", _sincos_position_embedding(decoder_dim, self.grid)[None],
                                 persistent=False)
            self.decoder_blocks = nn.ModuleList(
                Block(decoder_dim, decoder_heads, mlp_ratio=4.0, qkv_bias=True) for _ in range(decoder_depth))
            self.decoder_norm = nn.LayerNorm(decoder_dim)
            self.decoder_pred = nn.Linear(decoder_dim, self.patch * self.patch * 3)
            nn.init.normal_(self.mask_token, std=0.02)

        def patchify(self, images: torch.Tensor) -> torch.Tensor:
            b, c, _, _ = images.shape
            p, (gh, gw) = self.patch, self.grid
            x = images.reshape(b, c, gh, p, gw, p).permute(0, 2, 4, 3, 5, 1)
            return x.reshape(b, gh * gw, p * p * c)

        def encode_visible(self, images: torch.Tensor, mask_ratio: float, generator: torch.Generator | None,
                           noise: torch.Tensor | None = None):
            enc = self.encoder
            tokens = enc.patch_embed(images)
            prefix_pos = None
            if getattr(enc, "no_embed_class", False) or enc.pos_embed is None:
                pos = enc.pos_embed if enc.pos_embed is not None else 0
                tokens = tokens + pos
            else:
                prefix_pos = enc.pos_embed[:, :self.prefix]
                tokens = tokens + enc.pos_embed[:, self.prefix:]
            b, n, d = tokens.shape
            keep = max(1, int(round(n * (1 - mask_ratio))))
            if noise is None:  # else the caller's per-sample noise (pre-training: delbench.sdk.distributed)
                noise = torch.rand(b, n, generator=generator, device=tokens.device)
            order = torch.argsort(noise, dim=1)
            visible = order[:, :keep]
            tokens = torch.gather(tokens, 1, visible[..., None].expand(-1, -1, d))
            if self.prefix:
                prefix = enc.cls_token.expand(b, -1, -1) if enc.cls_token is not None else None
                if getattr(enc, "reg_token", None) is not None:
                    regs = enc.reg_token.expand(b, -1, -1)
                    prefix = regs if prefix is None else torch.cat([prefix, regs], dim=1)
                if prefix_pos is not None:
                    prefix = prefix + prefix_pos
                tokens = torch.cat([prefix, tokens], dim=1)
            tokens = enc.norm_pre(tokens)
            for block in enc.blocks:
                tokens = block(tokens)
            return enc.norm(tokens), order, keep

        def forward(self, images: torch.Tensor, mask_ratio: float, generator: torch.Generator | None,
                    norm_pix_loss: bool = True, noise: torch.Tensor | None = None) -> torch.Tensor:
            """Per-image MAE loss (B,) on masked patches; the mask keeps the patches of lowest
            ``noise`` (B, n_patches), drawn from ``generator`` when not given."""
            latent, order, keep = self.encode_visible(images, mask_ratio, generator, noise)
            x = self.decoder_embed(latent)
            b, n = order.shape
            prefix, visible = x[:, :self.prefix], x[:, self.prefix:]
            full = torch.cat([visible, self.mask_token.expand(b, n - keep, -1)], dim=1)
            restore = torch.argsort(order, dim=1)
            full = torch.gather(full, 1, restore[..., None].expand(-1, -1, full.shape[-1]))
            x = torch.cat([prefix, full + self.decoder_pos], dim=1)
            for block in self.decoder_blocks:
                x = block(x)
            pred = self.decoder_pred(self.decoder_norm(x))[:, self.prefix:]
            target = self.patchify(images)
            if norm_pix_loss:
                mean, var = target.mean(dim=-1, keepdim=True), target.var(dim=-1, keepdim=True)
                target = (target - mean) / (var + 1e-6) ** 0.5
            per_patch = ((pred.float() - target) ** 2).mean(dim=-1)  # fp32 loss under bf16 autocast
            masked = torch.ones(b, n, device=images.device)
            masked.scatter_(1, order[:, :keep], 0.0)
            return (per_patch * masked).sum(dim=1) / masked.sum(dim=1)

    return MaskedAutoencoder()


def cosine_lr(step: int, total: int, peak: float, warmup: int, floor: float = 0.0) -> float:
    """Linear warm-up to ``peak`` then half-cosine decay to ``floor`` (the MAE schedule)."""
    if warmup and step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def read_state_dict(path: str | Path) -> dict:
    """Tensors of a checkpoint file: safetensors, or a torch file loaded with weights_only."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise DelbenchError(f"checkpoint file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as exc:
            raise DelbenchError(f"cannot read checkpoint {path}: not a complete safetensors file "
                                f"({one_line(str(exc))})") from None
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's message goes on to advise weights_only=False, i.e. running the file's code;
        # delbench never does, so only the offending object is named
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        what = f" ({found.group(1)})" if found else ""
        raise DelbenchError(f"checkpoint {path} holds Python objects besides tensors{what}; delbench loads "
                            f"tensors only: save the state dict with safetensors or torch.save(model.state_dict())") from None
    except Exception as exc:  # truncated or corrupt files, among others: one line naming the file
        raise DelbenchError(f"cannot read checkpoint {path}: {type(exc).__name__}: "
                            f"{one_line(str(exc)).split('. ')[0]}") from None
    for key in ("model", "state_dict", "module"):  # MAE/DeiT/Lightning wrappers
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise DelbenchError(f"checkpoint {path} holds no state dict")
    return state


class FrameCache:
    """The decoded frames of one pre-training, kept while they fit in ``max_bytes``.

    Compute-matched training draws a small subset many times (a 5 % subset twelve times in
    the embedded protocols), and decoding or rendering a frame cost about a quarter of a
    CPU training step there. Frames are kept in first-seen order until the budget is spent;
    later ones are loaded on every draw. Batches are fresh arrays, so callers may modify them.
    """

    def __init__(self, dataset: Dataset, max_bytes: int):
        self.dataset, self.max_bytes = dataset, int(max_bytes)
        self.frames: dict[int, np.ndarray] = {}
        self.bytes = 0

    def load_images(self, indices: np.ndarray) -> np.ndarray:
        missing = np.array([i for i in indices if int(i) not in self.frames], dtype=np.int64)
        loaded = dict(zip(missing.tolist(), self.dataset.load_images(missing))) if missing.size else {}
        for index, frame in loaded.items():
            if self.bytes + frame.nbytes <= self.max_bytes:
                self.frames[index] = frame.copy()  # a view would keep its whole batch alive
                self.bytes += frame.nbytes
        return np.stack([self.frames[int(i)] if int(i) in self.frames else loaded[int(i)] for i in indices])


class TimmMAE(Backbone):
    """Any timm ViT (``model``) pre-trained with the MAE objective; features for selectors.

    Parameters: ``model`` (timm name), ``image_size``, ``patch_size`` (None = the model's),
    ``checkpoint`` (a local .safetensors/.pth file: a full state of this class or an encoder
    from timm/the MAE release; positional embeddings are resampled to ``image_size``),
    ``mask_ratio``, ``decoder_dim``/``decoder_depth``/``decoder_heads``, ``norm_pix_loss``,
    ``pool`` ('mean' of patch tokens or 'cls') for ``embed``, ``model_kwargs`` (extra
    ``timm.create_model`` keywords, e.g. ``depth=2`` for tests), ``device``.
    """

    name = "timm_mae"
    #: 2: masks and flips drawn per sample from (seed, global position), for data parallelism
    version = "2"
    description = "timm ViT encoder with a masked-autoencoder objective (normalised-pixel loss)"
    #: what ``embed`` pools: the mean of the patch tokens or the class token
    pool_choices = ("mean", "cls")
    #: the ``pretrain.optimizer`` keys :meth:`pretrain` reads (AdamW with a cosine schedule)
    optimizer_keys = ("lr", "weight_decay", "betas", "warmup_steps", "min_lr")
    #: memory for a pre-training's decoded frames (:class:`FrameCache`); results do not depend on it
    frame_cache_bytes = 1 << 30

    @classmethod
    def check_optimizer(cls, optimizer: Mapping[str, Any]) -> None:
        check_known_keys(optimizer, cls.optimizer_keys, "")
        check_number(optimizer, "lr", 0.0, None, low_open=True)
        check_number(optimizer, "weight_decay", 0.0)
        check_int(optimizer, "warmup_steps", 0)
        check_number(optimizer, "min_lr", 0.0)
        betas = optimizer.get("betas", (0.9, 0.95))
        if not (isinstance(betas, (list, tuple)) and len(betas) == 2 and all(is_number(b) and 0 <= b < 1 for b in betas)):
            raise ConfigError(f"betas must be two numbers in [0, 1), got {betas!r}")

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> None:
        if "model" in params and not (isinstance(params["model"], str) and params["model"]):
            raise ConfigError(f"model must be a timm model name, got {params['model']!r}")
        check_int(params, "image_size", 1)
        check_int(params, "patch_size", 1, allow_none=True)
        check_path(params, "checkpoint")
        check_number(params, "mask_ratio", 0.0, 1.0, low_open=True, high_open=True)
        check_int(params, "decoder_dim", 4)
        if params.get("decoder_dim", 4) % 4:
            raise ConfigError(f"decoder_dim must be divisible by 4, got {params['decoder_dim']}")
        check_int(params, "decoder_depth", 0)
        check_int(params, "decoder_heads", 1)
        check_bool(params, "norm_pix_loss")
        check_choice(params, "pool", cls.pool_choices)
        check_number(params, "drop_path_rate", 0.0, 1.0, high_open=True)
        if not isinstance(params.get("model_kwargs") or {}, Mapping):
            raise ConfigError(f"model_kwargs must be a dict of timm.create_model keywords, got {params['model_kwargs']!r}")
        if "device" in params and not isinstance(params["device"], str):
            raise ConfigError(f"device must be a torch device name such as 'cpu' or 'cuda', got {params['device']!r}")
        given = {**_constructor_defaults(cls), **params}
        _check_timm_encoder(given["model"], given["image_size"], given["patch_size"], dict(given["model_kwargs"] or {}))

    def __init__(self, *, model: str = "vit_tiny_patch16_224", image_size: int = 64,
                 patch_size: int | None = None, checkpoint: str | None = None,
                 mask_ratio: float = 0.75, decoder_dim: int = 128, decoder_depth: int = 2,
                 decoder_heads: int = 4, norm_pix_loss: bool = True, pool: str = "mean",
                 drop_path_rate: float = 0.0, model_kwargs: Mapping[str, Any] | None = None,
                 device: str = "cpu") -> None:
        import torch

        self.model_name, self.image_size = model, int(image_size)
        self.mask_ratio, self.norm_pix_loss, self.pool = float(mask_ratio), bool(norm_pix_loss), pool
        # under torchrun, 'cuda' is this process's GPU (cuda:LOCAL_RANK)
        self.device = device_for(world_from_env(), device)
        self.mae = _build_mae(model, self.image_size, patch_size, decoder_dim, decoder_depth,
                              decoder_heads, drop_path_rate, dict(model_kwargs or {})).to(self.device)
        if pool == "cls" and getattr(self.mae.encoder, "cls_token", None) is None:
            raise ConfigError(f"pool='cls' needs a model with a class token; {model!r} has none "
                              f"(use pool='mean')")
        cfg = self.mae.encoder.pretrained_cfg
        self._mean = torch.tensor(cfg.get("mean", (0.5, 0.5, 0.5)), device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(cfg.get("std", (0.5, 0.5, 0.5)), device=self.device).view(1, 3, 1, 1)
        if checkpoint:
            self.load(checkpoint)

    # --- contract ------------------------------------------------------------------------
    @property
    def embed_dim(self) -> int:
        return int(self.mae.encoder.embed_dim)

    @property
    def grid_size(self) -> tuple[int, int]:
        return self.mae.grid

    @property
    def encoder(self):
        return self.mae.encoder

    def preprocess(self, images: np.ndarray):
        import torch

        if images.ndim != 4 or images.shape[-1] != 3:
            raise DelbenchError(f"images must be uint8 (B, H, W, 3), got shape {images.shape}")
        if images.shape[1:3] != (self.image_size, self.image_size):
            raise DelbenchError(f"images are {images.shape[1]}×{images.shape[2]} but the backbone "
                                f"expects {self.image_size}×{self.image_size}; set the dataset's image_size")
        x = torch.from_numpy(np.ascontiguousarray(images)).to(self.device).permute(0, 3, 1, 2).float() / 255.0
        return (x - self._mean) / self._std

    def patch_tokens(self, images):
        return self.mae.encoder.forward_features(images)[:, self.mae.prefix:]

    def _pooled(self, images):
        if self.pool == "cls":  # __init__ checked that the encoder has a class token (position 0)
            return self.mae.encoder.forward_features(images)[:, 0]
        return self.patch_tokens(images).mean(1)

    def embed(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        import torch

        out = []
        self.mae.eval()
        with torch.inference_mode():
            for start in range(0, len(images), batch_size):
                pooled = self._pooled(self.preprocess(images[start:start + batch_size]))
                out.append(pooled.float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.embed_dim), np.float32)

    def reconstruction_loss(self, images: np.ndarray, *, seed: int, repeats: int = 4) -> np.ndarray:
        """Mean per-image MAE loss over ``repeats`` seeded random maskings (a difficulty score)."""
        import torch

        self.mae.eval()
        generator = torch.Generator(device=self.device).manual_seed(int(seed))
        with torch.inference_mode():
            x = self.preprocess(images)
            losses = [self.mae(x, self.mask_ratio, generator, self.norm_pix_loss) for _ in range(repeats)]
        return torch.stack(losses).mean(0).cpu().numpy().astype(np.float32)

    def fingerprint(self) -> str:
        """sha256 over every tensor of the MAE (encoder and decoder: both shape the
        reconstruction loss), with the loss settings, in state-dict order."""
        import hashlib

        import torch

        digest = hashlib.sha256(f"{self.mask_ratio}|{self.norm_pix_loss}|{self.image_size}".encode())
        for key, tensor in self.mae.state_dict().items():
            value = tensor.detach().cpu().contiguous()
            digest.update(f"{key}|{value.dtype}|{tuple(value.shape)}".encode())
            digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())  # raw bytes, any dtype
        return digest.hexdigest()

    def pretrain(self, pool: Dataset, indices: np.ndarray, *, steps: int, batch_size: int, seed: int,
                 optimizer: Mapping[str, Any], progress: bool = False,
                 on_step=None, resume_dir: str | Path | None = None, checkpoint_every: int = 0,
                 precision: str = "fp32") -> dict[str, Any]:
        """MAE pre-training: ``steps`` AdamW steps over epochs of seeded permutations of ``indices``.

        Augmentation: random horizontal flip only (documented protocol choice: the synthetic
        and endoscopy frames have no canonical left/right). ``on_step(step, loss)`` is called
        after every step (checkpoints at intermediate epochs hook in here).

        Data-parallel under ``torchrun`` (:mod:`delbench.sdk.distributed`): ``batch_size`` is the
        global batch; each of the ``WORLD_SIZE`` processes trains on its slice of every
        global batch, DDP averages the gradients, and the masks and flips of a sample are a
        function of (``seed``, its position in the run's sequence of global batches), so any
        number of processes computes what one process does. Rank 0 alone writes states; the
        recorded loss is the mean over the global batch on every rank. ``precision='bf16'``
        runs the forward pass under bf16 autocast (CUDA only; a clear error elsewhere).

        Resumable: with ``resume_dir``, the state after every ``checkpoint_every``-th step
        (model, AdamW moments, the step — the cosine schedule is a function of it —, the
        data order and cursor, the numpy and torch RNG states, the loss history) is saved
        there (:mod:`delbench.sdk.training_state`), and a pre-training that finds a state of the
        same run there continues from it. Every random draw (data order, flips, MAE masks,
        drop-path) comes from that saved state or from the step, so on CPU with
        deterministic algorithms a resumed run ends bitwise equal to an uninterrupted one.
        Drop-path draws from torch's global generator per process: with ``drop_path_rate``
        > 0 a multi-process run is not the single-process one.
        """
        import torch
        from tqdm.auto import tqdm

        indices = np.asarray(indices, dtype=np.int64)
        if indices.size == 0:
            raise DelbenchError("cannot pre-train on an empty subset")
        check_precision(precision, self.device.type)
        world = world_from_env()
        mine = world.batch_slice(batch_size)  # refuses a global batch that does not divide
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        params = dict(optimizer)
        peak_lr = float(params.get("lr", 1.5e-4))
        warmup = int(params.get("warmup_steps", 0))
        opt = torch.optim.AdamW(self.mae.parameters(), lr=peak_lr,
                                betas=tuple(params.get("betas", (0.9, 0.95))),
                                weight_decay=float(params.get("weight_decay", 0.05)))
        history: list[float] = []
        order: np.ndarray = np.empty(0, np.int64)
        cursor = start = 0
        # "masks": how masks and flips are drawn; states of the older running-generator scheme
        # are not resumed (their continuation would draw differently)
        fingerprint = {"backbone": self.name, "model": self.model_name, "steps": int(steps),
                       "batch_size": int(batch_size), "seed": int(seed), "indices": indices_digest(indices),
                       "optimizer": params, "masks": "per-sample", "precision": precision}
        state = load_state(resume_dir, fingerprint) if resume_dir is not None else None
        if state is not None:
            self.mae.load_state_dict(state.prefixed("model"))
            load_optimizer(opt, state)
            torch.set_rng_state(state.tensors["rng.torch"])
            if self.device.type == "cuda":
                torch.cuda.set_rng_state(state.tensors["rng.cuda"], self.device)
            rng.bit_generator.state = state.extra["numpy_rng"]
            order, cursor = state.tensors["data.order"].numpy().astype(np.int64), int(state.extra["cursor"])
            history = state.tensors["loss.history"].tolist()
            start = state.step
            logger.info("resuming pre-training from step %d of %d (%s)", start, steps, resume_dir)

        def save(step: int) -> None:
            tensors, optimizer_rest = optimizer_tensors(opt)
            tensors.update({f"model.{k}": v for k, v in self.mae.state_dict().items()})
            tensors.update({"rng.torch": torch.get_rng_state(), "data.order": torch.from_numpy(order.copy()),
                            "loss.history": torch.tensor(history, dtype=torch.float64)})
            if self.device.type == "cuda":
                tensors["rng.cuda"] = torch.cuda.get_rng_state(self.device)
            save_state(resume_dir, TrainingState(step, tensors, {"numpy_rng": rng.bit_generator.state,
                                                                 "cursor": cursor}, optimizer_rest), fingerprint)

        frames = FrameCache(pool, self.frame_cache_bytes)
        n_patches = self.mae.grid[0] * self.mae.grid[1]
        autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if precision == "bf16"
                    else contextlib.nullcontext())
        self.mae.train()
        with process_group(world, self.device):
            model = self._data_parallel(world)
            try:
                bar = tqdm(range(start, steps), desc="pretrain", disable=not progress or not world.is_main,
                           leave=False, unit="step", initial=start, total=steps)
                for step in bar:
                    if cursor + batch_size > order.size:  # a new epoch: carry the remainder over
                        order = np.concatenate([order[cursor:], rng.permutation(indices)])
                        while order.size < batch_size:
                            order = np.concatenate([order, rng.permutation(indices)])
                        cursor = 0
                    batch = np.sort(order[cursor:cursor + batch_size])
                    cursor += batch_size
                    noise, flip = sample_noise(seed, step * batch_size + np.arange(batch_size), n_patches)
                    images = frames.load_images(batch[mine])
                    flip = flip[mine]
                    images[flip] = images[flip, :, ::-1]
                    for group in opt.param_groups:
                        group["lr"] = cosine_lr(step, steps, peak_lr, warmup, float(params.get("min_lr", 0.0)))
                    with autocast:
                        loss = model(self.preprocess(images), self.mask_ratio, None, self.norm_pix_loss,
                                     noise=torch.from_numpy(noise[mine]).to(self.device)).mean()
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    history.append(self._global_mean(loss.detach(), world))
                    if progress and step % 10 == 0:
                        bar.set_postfix(loss=f"{history[-1]:.4f}")
                    if on_step is not None:
                        on_step(step + 1, history[-1])
                    if resume_dir is not None and checkpoint_every and (step + 1) % checkpoint_every == 0 \
                            and step + 1 < steps and world.is_main:
                        save(step + 1)
            finally:
                # the DDP reducer and the optimizer go before the process group does
                del model, opt
        self.mae.eval()
        return {"loss": history, "steps": steps, "images_seen": steps * batch_size, "resumed_from_step": start,
                "world_size": world.size, "precision": precision}

    def _data_parallel(self, world: World):
        """The module the training step calls: DDP around the MAE across processes, else the MAE."""
        if not world.distributed:
            return self.mae
        from torch.nn.parallel import DistributedDataParallel

        # find_unused_parameters: some timm encoders hold parameters the MAE path never uses
        # (fc_norm, heads); DDP would otherwise wait for their gradients forever
        device_ids = [self.device] if self.device.type == "cuda" else None
        return DistributedDataParallel(self.mae, device_ids=device_ids, find_unused_parameters=True)

    @staticmethod
    def _global_mean(loss, world: World) -> float:
        """The loss over the whole global batch (the mean of the ranks' equal-slice means)."""
        if world.distributed:
            import torch.distributed as dist

            loss = loss.float().clone()
            dist.all_reduce(loss)
            loss /= world.size
        return float(loss)

    # --- checkpoints (tensors only) --------------------------------------------------------
    def save(self, path: str | Path) -> None:
        from safetensors.torch import save_file

        if not world_from_env().is_main:  # under torchrun every rank holds the same weights; one writes
            return
        with atomic_path(path) as tmp:
            save_file({k: v.detach().cpu().contiguous() for k, v in self.mae.state_dict().items()}, str(tmp))

    def load(self, path: str | Path) -> None:
        """Load a full MAE state (ours) or just an encoder (timm/MAE-release checkpoint)."""
        from timm.layers import resample_abs_pos_embed

        state = read_state_dict(path)
        own = self.mae.state_dict()
        if not any(k.startswith("encoder.") for k in state):  # an encoder-only checkpoint
            state = {f"encoder.{k}": v for k, v in state.items()}
        pos_key = "encoder.pos_embed"
        if pos_key in state and pos_key in own and state[pos_key].shape != own[pos_key].shape:
            state[pos_key] = resample_abs_pos_embed(
                state[pos_key], new_size=list(self.mae.grid), num_prefix_tokens=self.mae.prefix)
        usable = {k: v for k, v in state.items() if k in own and v.shape == own[k].shape}
        encoder_keys = [k for k in own if k.startswith("encoder.")]
        loaded_encoder = sum(k in usable for k in encoder_keys)
        if loaded_encoder == 0:
            raise DelbenchError(f"checkpoint {path} has no tensors matching {self.model_name} "
                                f"(first keys: {list(state)[:3]})")
        self.mae.load_state_dict(usable, strict=False)
        if loaded_encoder < len(encoder_keys):
            logger.warning("checkpoint %s: loaded %d of %d encoder tensors", path, loaded_encoder,
                           len(encoder_keys))


@hookimpl
def delbench_register_backbones() -> list[type]:
    return [TimmMAE]
