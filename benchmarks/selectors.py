# Where the data-effective selectors land between the references, tuning none of them to it:
# the selectors of the literature at 5 % and 20 % with three seeds each, beside the quality
# (oracle, random, anti_oracle) and coverage (spread_valid, packed_valid) references of
# benchmarks/validity.py (run with its `runtime.cache_dir`, they reuse its pre-trainings). The report
# gives each cell's score, the scenes and centres it kept, and the rank correlation of the score
# with every ground-truth column (docs/findings.md has the table).
_base_ = ['validity.py']

protocol = dict(name='selectors', version='1',
                description='the literature selectors between the quality and coverage references, 5 % and 20 %')

_centred = dict(center=True)  # as in benchmarks/smoke.py
selectors = [dict(name=name) for name in ('oracle', 'random', 'anti_oracle', 'spread_valid', 'packed_valid')] + [
    dict(name=name, params=_centred) for name in ('meddel', 'semdedup', 'd4', 'prototypes')] + [
    dict(name=name) for name in ('kcenter_greedy', 'facility_location', 'quality_filter', 'optidel')]
