"""Per-image cost of OptiDEL's stages on this machine (``python benchmarks/perf/optidel_stages.py``).

Stages: rendering/reading frames is not counted; proposal (classical, and SAM ViT-B with
random weights — same compute as the released checkpoint — at its 1024-px input, encoder
and 32 × 32-point mask generator apart), hardness (MAE loss over 4 maskings per patch) with
the smoke protocol's backbone (4-block ViT-Tiny, 64 px, patch 8) and the paper protocol's
(ViT-B/16 MAE at 224 px), synthesis (one 2×2 mosaic written as PNG). Prints one JSON line per
measurement with the thread count and the load average. ``--sam`` adds the SAM rows (slow on
a CPU); ``--device cuda`` runs the model stages there.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np


def timed(function, repeats: int) -> float:
    function()  # warm-up (allocations, first-call costs)
    started = time.perf_counter()
    for _ in range(repeats):
        function()
    return (time.perf_counter() - started) / repeats


def report(stage: str, seconds: float, per: str, **extra) -> None:
    import torch

    print(json.dumps({"stage": stage, "ms_per_" + per: round(1000 * seconds, 3), "threads": torch.get_num_threads(),
                      "load_average": os.getloadavg()[0], **extra}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sam", action="store_true")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    import torch

    from delbench_plugins.backbones.timm_mae import TimmMAE
    from delbench_plugins.datasets.synthetic import SyntheticEndoscopy
    from delbench_plugins.lib.region_proposals import ClassicalProposer
    from delbench_plugins.selectors.optidel import resize

    for size in (64, 224):
        images = SyntheticEndoscopy(num_frames=64, image_size=size).load_images(np.arange(64))
        proposer = ClassicalProposer()
        report("proposal/classical", timed(lambda: proposer.propose(images), args.repeats) / 64, "image", size=size)
    settings = {"smoke (4-block ViT-Tiny, 64 px, patch 8)": dict(image_size=64, patch_size=8, model_kwargs={"depth": 4}),
                "paper (ViT-B/16 MAE, 224 px)": dict(model="vit_base_patch16_224", image_size=224, decoder_dim=512,
                                                     decoder_depth=8, decoder_heads=16)}
    for label, params in settings.items():
        backbone = TimmMAE(device=args.device, **params)
        size = params["image_size"]
        patches = SyntheticEndoscopy(num_frames=64, image_size=size).load_images(np.arange(64))
        report("scoring/mae_loss x4 maskings", timed(lambda: backbone.reconstruction_loss(patches, seed=0, repeats=4),
                                                     args.repeats) / 64, "patch", model=label, device=args.device)
        crop = patches[0][size // 4: size // 2, size // 4: size // 2]
        report("scoring/crop+resize", timed(lambda: resize(crop, size, size), 50), "patch", size=size)
    with tempfile.TemporaryDirectory() as directory:
        from delbench.sdk.derived import DerivedSource, write_derived_image

        for size in (64, 224):
            canvas = SyntheticEndoscopy(num_frames=1, image_size=size).load_images(np.arange(1))[0]
            counter = iter(range(10 ** 6))

            def synthesise():
                # 4 patches resized into the cells, one PNG (a fresh pixel so the file is written)
                for _ in range(4):
                    resize(canvas[: size // 2 + 7, : size // 2 + 7], size // 2, size // 2)
                canvas[0, 0, 0] = next(counter) % 256
                write_derived_image(directory, canvas, [DerivedSource(0, "x", (0, 0, 1, 1), (0, 0, 1, 1))])
            report("synthesis/mosaic+png", timed(synthesise, 20), "image", size=size)
    if args.sam:
        from segment_anything import SamAutomaticMaskGenerator, sam_model_registry

        sam = sam_model_registry["vit_b"]().to(args.device).eval()
        image = SyntheticEndoscopy(num_frames=1, image_size=224).load_images(np.arange(1))[0]
        x = torch.zeros(1, 3, 1024, 1024, device=args.device)
        with torch.inference_mode():
            report("proposal/sam vit_b encoder (1024 px)", timed(lambda: sam.image_encoder(x), 1), "image",
                   device=args.device)
        generator = SamAutomaticMaskGenerator(sam, output_mode="uncompressed_rle")
        report("proposal/sam vit_b encoder + 32x32-point generator", timed(lambda: generator.generate(image), 1),
               "image", device=args.device)


if __name__ == "__main__":
    main()
