# The embedded default benchmark: the synthetic endoscopy pool (four centres, heavy-tailed
# scenes, half the frames planted invalid), every selector at 5 %, MAE pre-training of a
# 4-block ViT-Tiny at 64 px (patch 8), compute-matched, and polyp segmentation by a frozen
# linear probe on two centres' sets, with the randomly initialised encoder as a reference row.
# The quality (oracle > random > anti_oracle) and coverage (spread_valid > packed_valid)
# references run two seeds, so the report's Validity section tests both brackets.
# `delbench run benchmarks/smoke.py`; its run time and what it shows: docs/findings.md.
_base_ = ['_base_/synthetic_cpu.py']

protocol = dict(name='smoke', version='5',
                description='synthetic endoscopy pool (4 centres), all selectors at 5 %, MAE ViT-Tiny (4 blocks) '
                            '64px, compute-matched, frozen linear segmentation probe on two centres')

ratios = [0.05, 1.0]
# The SemDeDup family measures cosine geometry around the pool mean (center=True): features of
# a briefly warmed-up encoder share a large common component that otherwise hides outliers.
_centred = dict(center=True)
_reference_seeds = [0, 1]
selectors = [dict(name='full', ratios=[1.0])] + [
    dict(name=name, ratios=[0.05], seeds=_reference_seeds)
    for name in ('oracle', 'random', 'anti_oracle', 'spread_valid', 'packed_valid')
] + [dict(name=name, ratios=[0.05], params=_centred) for name in ('meddel', 'semdedup', 'prototypes', 'd4')] + [
    dict(name=name, ratios=[0.05]) for name in (
        'stratified', 'kcenter_greedy', 'herding', 'facility_location', 'ccs', 'mae_loss', 'phash_dedup',
        'quality_filter', 'optidel')]
# `optidel` (OptiDEL's defaults: classical proposer without a SAM checkpoint, 3 regions per
# frame, MAE loss of the warm-up encoder over 4 maskings, 2x2 mosaics) trains on 200 new images
# at 5 %; its proposals and scores are cached under $DELBENCH_CACHE_DIR/optidel.
seeds = [0]
