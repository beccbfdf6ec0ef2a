# The regression protocol of `tox -e regression`: small enough to run in about half a minute on
# one CPU core and deterministic there. `delbench compare` checks a run of it against
# benchmarks/baselines/regression.json (subset hashes exactly, metrics within the tox env's
# tolerance). A plugin author copies this file, lists their own selector in `selectors`, and
# keeps a baseline of their own (docs/submissions.md, "Regression suites for your plugin"). It inherits
# nothing, so a copy works in any repository.

protocol = dict(name='regression', version='1',
                description='regression suite: tiny synthetic pool, 2-block ViT at 32 px, frozen kNN probe')
pool = dict(name='synthetic_endoscopy',
            params=dict(num_frames=120, frames_per_sequence=40, scene_length=10, centre_shares=[1], image_size=32,
                          seed=0))
ratios = [0.1, 1.0]
seeds = [0]
selectors = [
    dict(name='full', ratios=[1.0]),
    dict(name='random', ratios=[0.1], seeds=[0, 1]),
    dict(name='oracle', ratios=[0.1]),
    dict(name='anti_oracle', ratios=[0.1]),
    dict(name='quality_filter', ratios=[0.1]),
]
# Selectors on learned embeddings (meddel, semdedup, ...) are exact run to run on one machine,
# but their subsets follow the float results of the warm-up encoder and the k-means backend
# (faiss or scikit-learn), which can differ between CPUs: a suite meant to pass on any machine
# keeps them out or keeps a baseline per machine.
backbone = dict(name='timm_mae',
                params=dict(model='vit_tiny_patch16_224', image_size=32, patch_size=8,
                            decoder_dim=32, decoder_depth=1, decoder_heads=2,
                            model_kwargs=dict(depth=2)))
pretrain = dict(budget='compute_matched', reference_epochs=0.4, batch_size=8,
                optimizer=dict(lr=1e-3, weight_decay=0.05, betas=(0.9, 0.95), warmup_steps=1, min_lr=0.0))
embedding = dict(warmup_steps=2, batch_size=64)
normdel = dict(alpha=1.0)
# the frozen kNN probe trains nothing: the score follows the encoder alone
tasks = [dict(name='segmentation',
              dataset=dict(name='synthetic_polyp_seg', params=dict(num_train=16, num_test=8)),
              params=dict(head='knn', k=5, batch_size=8))]
