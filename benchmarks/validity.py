# Does the benchmark measure what it claims? The bracket selectors on the synthetic pool —
# `oracle` (every planted core frame first), `random`, `anti_oracle` (invalid frames and
# near-duplicates of few scenes first) — must order the downstream score beyond seed noise at
# every ratio, and `meddel` and `optidel` are placed between them. The report's Validity
# section gives the paired gaps with 95 % t intervals and the rank correlation between core
# frames kept and the score. `delbench run benchmarks/validity.py` (60 cells and 8 reference
# rows): 18 min 11 s on an idle 2-core CPU (README, "What the smoke benchmark shows").
_base_ = ['_base_/synthetic_cpu.py']

protocol = dict(name='validity', version='3',
                description='bracket check: oracle > random > anti_oracle on the synthetic pool, frozen kNN probe')

ratios = [0.05, 0.2]
# Eight seeds where the check tests gaps (`--cfg-options "seeds=[...]"` changes them);
# meddel and optidel (the two methods the project benchmarks) are placed within the bracket
# with three (optidel's proposals and hardness scores are computed once and cached; its seed
# only changes which patches share a mosaic).
selectors = [
    dict(name='oracle'),
    dict(name='random'),
    dict(name='anti_oracle'),
    dict(name='meddel', params=dict(center=True), seeds=[0, 1, 2]),
    dict(name='optidel', seeds=[0, 1, 2]),
]
seeds = [0, 1, 2, 3, 4, 5, 6, 7]
