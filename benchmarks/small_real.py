# A real-data protocol sized for a CPU (about an hour on 2 cores, 64 px ViT-Tiny): pre-train on
# a folder of unlabeled frames (an image_folder pool), evaluate segmentation on Kvasir-SEG and
# CVC-ClinicDB. Set DELBENCH_KVASIR_SEG_ROOT and DELBENCH_CVC_CLINICDB_ROOT (docs/datasets.md)
# and the pool folder with DELBENCH_IMAGE_FOLDER_ROOT (for example Kvasir-SEG's
# images/ folder, or HyperKvasir's unlabeled-images/images) or pool.params.root=PATH.
_base_ = ['_base_/mae_compute_matched.py']

protocol = dict(name='small_real', version='1',
                description='CPU-sized real-data protocol: ViT-Tiny 64px MAE, Kvasir-SEG + CVC-ClinicDB')

pool = dict(name='image_folder', params=dict(image_size=64))

ratios = [0.1, 0.2, 1.0]
selectors = [
    dict(name='full', ratios=[1.0]),
    dict(name='random', ratios=[0.1, 0.2]),
    dict(name='meddel', ratios=[0.1, 0.2]),
]
seeds = [0, 1]

backbone = dict(name='timm_mae',
                params=dict(model='vit_tiny_patch16_224', image_size=64, patch_size=8,
                            decoder_dim=128, decoder_depth=2, decoder_heads=4))
pretrain = dict(reference_epochs=4, batch_size=16, optimizer=dict(lr=1e-3, weight_decay=0.05, warmup_steps=50))
embedding = dict(warmup_steps=200)

_segmentation = dict(epochs=15, batch_size=32, lr=1e-3, freeze_encoder=True)
tasks = [dict(name='segmentation', dataset=dict(name=name, params=dict()), params=_segmentation)
         for name in ('kvasir_seg', 'cvc_clinicdb')]
