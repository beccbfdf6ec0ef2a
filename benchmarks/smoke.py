# The embedded default benchmark: the synthetic endoscopy pool (videos of few scenes, half
# the frames planted as invalid), every selector, MAE pre-training of a 4-block ViT-Tiny at
# 64 px (patch 8), compute-matched, and polyp segmentation by a frozen dense kNN probe on a
# domain-shifted test split, with the randomly initialised encoder as a reference row. The
# bracket selectors (oracle > random > anti_oracle) run five seeds at 0.05, so the report's
# Validity section can test that the score separates what the subsets keep.
# About 12 minutes on a 2-core CPU: `delbench run benchmarks/smoke.py`.
_base_ = ['_base_/mae_compute_matched.py']

protocol = dict(name='smoke', version='2',
                description='synthetic endoscopy pool, all selectors, MAE ViT-Tiny (4 blocks) 64px, compute-matched, '
                            'frozen kNN segmentation probe')

pool = dict(name='synthetic_endoscopy',
            params=dict(num_frames=4000, frames_per_sequence=200, scene_length=25,
                        invalid_fraction=0.5, image_size=64, seed=0))

ratios = [0.05, 0.2, 1.0]
# The SemDeDup family measures cosine geometry around the pool mean (center=True): features of
# a briefly warmed-up encoder share a large common component that otherwise hides outliers.
_centred = dict(center=True)
_bracket_seeds = [0, 1, 2, 3, 4]
selectors = [
    dict(name='full', ratios=[1.0]),
    dict(name='oracle', ratios=[0.05], seeds=_bracket_seeds),
    dict(name='random', ratios=[0.05], seeds=_bracket_seeds),
    dict(name='anti_oracle', ratios=[0.05], seeds=_bracket_seeds),
    dict(name='random', ratios=[0.2]),
    dict(name='meddel', ratios=[0.05, 0.2], params=_centred),
    dict(name='meddel', ratios=[0.05]),
    dict(name='semdedup', ratios=[0.05], params=_centred),
    dict(name='prototypes', ratios=[0.05], params=_centred),
    dict(name='d4', ratios=[0.05], params=_centred),
] + [dict(name=name, ratios=[0.05]) for name in (
    'stratified', 'kcenter_greedy', 'herding', 'facility_location', 'ccs', 'mae_loss',
    'phash_dedup', 'quality_filter')]
seeds = [0]

backbone = dict(name='timm_mae',
                params=dict(model='vit_tiny_patch16_224', image_size=64, patch_size=8,
                            decoder_dim=128, decoder_depth=2, decoder_heads=4, mask_ratio=0.75,
                            model_kwargs=dict(depth=4)))

# 0.6 epochs of the 4,000-frame pool = 150 steps of 16 at every ratio (12 epochs at 5 %).
pretrain = dict(reference_epochs=0.6, batch_size=16,
                optimizer=dict(lr=1.5e-4, weight_decay=0.05, warmup_steps=20))
embedding = dict(warmup_steps=100)

tasks = [dict(name='segmentation',
              dataset=dict(name='synthetic_polyp_seg', params=dict(num_train=256, num_test=256, seed=0)),
              params=dict(head='knn', k=20, batch_size=64))]

references = [dict(label='random_init', checkpoint=None)]
