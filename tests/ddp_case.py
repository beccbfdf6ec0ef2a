"""The tiny pre-training the data-parallel test runs in one process and under torchrun."""
import numpy as np

TINY = dict(model="vit_tiny_patch16_224", image_size=32, patch_size=8, decoder_dim=32, decoder_depth=1,
            decoder_heads=2, model_kwargs=dict(depth=1))
STEPS, GLOBAL_BATCH, SEED = 4, 8, 5


def run() -> dict:
    """Pre-train; return the gradients after step 1 (``grad.*``) and the final weights (``weight.*``)."""
    import torch

    import delbench_plugins.backbones.timm_mae  # noqa: F401  (ddp_pretrain.py patches it)
    from delbench import get_backbone, get_dataset

    pool = get_dataset("synthetic_endoscopy")(num_frames=40, frames_per_sequence=20, scene_length=5, image_size=32)
    torch.manual_seed(0)
    backbone = get_backbone("timm_mae")(**TINY)
    grads = {}

    def on_step(step, loss):
        if step == 1:
            grads.update({f"grad.{n}": p.grad.detach().clone() for n, p in backbone.mae.named_parameters()
                          if p.grad is not None})

    stats = backbone.pretrain(pool, np.arange(0, 40, 2), steps=STEPS, batch_size=GLOBAL_BATCH, seed=SEED,
                              optimizer={"lr": 1e-3, "warmup_steps": 1}, on_step=on_step)
    weights = {f"weight.{n}": v.detach().clone().contiguous() for n, v in backbone.mae.state_dict().items()}
    return {**grads, **weights, "loss": torch.tensor(stats["loss"], dtype=torch.float64)}
