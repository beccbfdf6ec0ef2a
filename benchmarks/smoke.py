# The embedded default benchmark: the synthetic endoscopy pool (videos of few scenes, half
# the frames planted as invalid), every selector, MAE pre-training of a 4-block ViT-Tiny at
# 64 px (patch 8), compute-matched, and polyp segmentation by a frozen dense kNN probe on a
# domain-shifted test split, with the randomly initialised encoder as a reference row. The
# bracket selectors (oracle > random > anti_oracle) run three seeds at 0.05 and 0.2, so the
# report's Validity section tests whether the score separates what the subsets keep.
# 10 min 29 s on an idle 2-core CPU (README, "What the smoke benchmark shows"):
# `delbench run benchmarks/smoke.py`.
_base_ = ['_base_/synthetic_cpu.py']

protocol = dict(name='smoke', version='4',
                description='synthetic endoscopy pool, all selectors, MAE ViT-Tiny (4 blocks) 64px, compute-matched, '
                            'frozen kNN segmentation probe')

ratios = [0.05, 0.2, 1.0]
# The SemDeDup family measures cosine geometry around the pool mean (center=True): features of
# a briefly warmed-up encoder share a large common component that otherwise hides outliers.
_centred = dict(center=True)
_bracket_seeds = [0, 1, 2]
selectors = [
    dict(name='full', ratios=[1.0]),
    dict(name='oracle', ratios=[0.05, 0.2], seeds=_bracket_seeds),
    dict(name='random', ratios=[0.05, 0.2], seeds=_bracket_seeds),
    dict(name='anti_oracle', ratios=[0.05, 0.2], seeds=_bracket_seeds),
    dict(name='meddel', ratios=[0.05, 0.2], params=_centred),
    dict(name='meddel', ratios=[0.05]),
    dict(name='semdedup', ratios=[0.05], params=_centred),
    dict(name='prototypes', ratios=[0.05], params=_centred),
    dict(name='d4', ratios=[0.05], params=_centred),
] + [dict(name=name, ratios=[0.05]) for name in (
    'stratified', 'kcenter_greedy', 'herding', 'facility_location', 'ccs', 'mae_loss',
    'phash_dedup', 'quality_filter', 'optidel')]
# `optidel` (OptiDEL's defaults: classical proposer without a SAM checkpoint, 3 regions per
# frame, MAE loss of the warm-up encoder over 4 maskings, 2x2 mosaics) trains on 200 new images
# at 5 %; its proposals and scores are cached under $DELBENCH_CACHE_DIR/optidel.
seeds = [0]
