# Does the benchmark measure what it claims? On the synthetic pool, two brackets must order the
# downstream score beyond seed noise at every ratio: quality — `oracle` (every planted core frame
# first) > `random` > `anti_oracle` (the invalid frames that teach least first) — and coverage —
# `spread_valid` (valid frames over every centre and scene) > `packed_valid` (as many valid
# frames from the fewest scenes of the biggest centre) by at least a point. The report's Validity
# section gives the paired gaps with 95 % t intervals and the rank correlation of the score with
# each ground-truth column; `--require-valid` exits 2 when a bracket fails. `oracle` and
# `spread_valid` keep the same frames at these ratios, so they share one pre-training.
# `benchmarks/validity_4x.py` checks the same brackets at 4x the steps (docs/findings.md).
_base_ = ['_base_/synthetic_cpu.py']

protocol = dict(name='validity', version='4',
                description='quality and coverage brackets on the synthetic pool, frozen linear probe, two centres')

ratios = [0.05, 0.2]
selectors = [dict(name=name) for name in ('oracle', 'random', 'anti_oracle', 'spread_valid', 'packed_valid')]
seeds = [0, 1, 2]
