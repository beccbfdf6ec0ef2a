# The validity check at 4x the default budget (9.6 epochs of the pool = 2,400 steps at every
# ratio): a ranking that flips with a longer budget is a defect of the benchmark, not a finding.
# The same selectors, ratios and seeds as benchmarks/validity.py (docs/findings.md).
_base_ = ['validity.py']

protocol = dict(name='validity_4x', version='1',
                description='the validity brackets at 4x the steps (2,400 at every ratio)')
pretrain = dict(reference_epochs=9.6)
