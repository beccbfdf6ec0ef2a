"""A third-party package that declares an entry point in group ``delbench`` is picked up.

The package is a real distribution: written to a temp dir, built and installed by pip into a
target folder, then seen by a fresh ``delbench`` process through PYTHONPATH.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SETUP_CFG = """\
[metadata]
name = delbench-{name}
version = 0.3.1

[options]
py_modules = {name}

[options.entry_points]
delbench =
    {name} = {name}
"""

GOOD_PLUGIN = '''\
from delbench import hookimpl


class FirstItems:
    name = "first_items"
    version = "0.3.1"
    description = "keeps the first items of the pool (third-party example)"
    deterministic_in_seed = True

    def select(self, pool, ratio, *, seed, embeddings=None, **params):
        import numpy as np
        from delbench.subset import subset_size  # the layout before delbench.sdk: a deprecated alias
        return np.arange(subset_size(len(pool), ratio), dtype=np.int64)


@hookimpl
def delbench_register_selectors():
    return [FirstItems]
'''

BROKEN_PLUGIN = "raise ImportError('this plugin is broken on purpose')\n"

# Written only against delbench.sdk (no other delbench module, no delbench_plugins import), as
# the plugin guide says: a template selector, a selector that implements select itself while
# subclassing Selector, and a backbone.
TEMPLATE_SELECTOR_PLUGIN = '''\
import numpy as np

from delbench.sdk import Selector, hookimpl


class FarthestFromMean(Selector):
    """Keeps the items whose embeddings lie farthest from the pool's mean embedding."""

    name = "farthest_from_mean"
    version = "0.2"
    description = "embeddings farthest from the pool mean (third-party example)"
    requires_embeddings = True
    deterministic_in_seed = True

    def choose(self, pool, k, *, seed, embeddings, power: float = 2.0):
        rows = np.asarray(embeddings, dtype=np.float64)
        distance = (np.abs(rows - rows.mean(axis=0)) ** power).sum(axis=1)
        return np.lexsort((np.arange(len(rows)), -distance))[:k], {"power": power}


@hookimpl
def delbench_register_selectors():
    return [FarthestFromMean]
'''

SELECT_ONLY_PLUGIN = '''\
import numpy as np

from delbench.sdk import ConfigError, Selection, Selector, check_int, hookimpl, subset_size


class LastItems(Selector):
    """Keeps every ``stride``-th item counted from the end: implements select itself (no choose),
    while subclassing Selector for its attributes and defaults."""

    name = "last_items"
    version = "0.1"
    description = "every stride-th item from the end (third-party example implementing select)"
    deterministic_in_seed = True

    @classmethod
    def check_params(cls, params):
        check_int(params, "stride", 1)

    def select(self, pool, ratio, *, seed, embeddings=None, stride: int = 1):
        k = subset_size(len(pool), ratio)
        if stride * k > len(pool):
            raise ConfigError(f"stride {stride} leaves fewer than {k} items")
        chosen = np.arange(len(pool) - 1, -1, -stride)[:k]
        return Selection(np.sort(chosen).astype(np.int64), {"stride": stride})


@hookimpl
def delbench_register_selectors():
    return [LastItems]
'''

BACKBONE_PLUGIN = '''\
import os
import tempfile

import numpy as np

from delbench.sdk import Backbone, hookimpl


class LinearPatchAutoencoder(Backbone):
    """Each patch is flattened and mapped by one linear layer to a token; a second linear
    layer rebuilds the pixels of a random three quarters of the patches from their tokens."""

    name = "linear_patch_autoencoder"
    version = "0.2"
    description = "one linear layer per patch, trained to rebuild masked patches (third-party example)"

    def __init__(self, *, image_size: int = 32, patch: int = 8, width: int = 24):
        import torch

        self.image_size, self.patch, self.width = image_size, patch, width
        generator = torch.Generator().manual_seed(0)
        self.layers = torch.nn.ModuleDict({"encode": torch.nn.Linear(3 * patch * patch, width),
                                           "decode": torch.nn.Linear(width, 3 * patch * patch)})
        with torch.no_grad():
            for parameter in self.layers.parameters():
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.05)

    @property
    def embed_dim(self):
        return self.width

    @property
    def grid_size(self):
        return (self.image_size // self.patch, self.image_size // self.patch)

    @property
    def encoder(self):
        return self.layers["encode"]

    def preprocess(self, images):
        import torch

        pixels = torch.as_tensor(np.array(images, dtype=np.float32))
        return pixels.permute(0, 3, 1, 2) / 127.5 - 1.0

    def _pixels(self, x):
        p = self.patch
        return x.unfold(2, p, p).unfold(3, p, p).permute(0, 2, 3, 1, 4, 5).reshape(len(x), -1, 3 * p * p)

    def patch_tokens(self, images):
        return self.layers["encode"](self._pixels(images))

    def embed(self, images):
        import torch

        with torch.no_grad():
            return self.patch_tokens(self.preprocess(images)).mean(1).numpy().astype(np.float32)

    def _masked_error(self, images, generator):
        import torch

        x = self._pixels(self.preprocess(images))
        error = ((self.layers["decode"](self.layers["encode"](x)) - x) ** 2).mean(-1)
        hidden = (torch.rand(error.shape, generator=generator) < 0.75).float()
        return (error * hidden).sum(1) / hidden.sum(1).clamp(min=1.0)

    def reconstruction_loss(self, images, *, seed):
        import torch

        with torch.no_grad():
            return self._masked_error(images, torch.Generator().manual_seed(seed)).numpy().astype(np.float32)

    def pretrain(self, pool, indices, *, steps, batch_size, seed, optimizer, progress=False, on_step=None):
        import torch

        generator, order = torch.Generator().manual_seed(seed), np.random.default_rng(seed)
        adam = torch.optim.Adam(self.layers.parameters(), lr=float(optimizer.get("lr", 1e-3)))
        losses = []
        for step in range(1, steps + 1):
            batch = np.sort(order.choice(indices, size=min(batch_size, len(indices)), replace=False))
            loss = self._masked_error(pool.load_images(batch), generator).mean()
            adam.zero_grad()
            loss.backward()
            adam.step()
            losses.append(float(loss.detach()))
            if on_step:
                on_step(step, losses[-1])
        return {"loss": losses}

    def save(self, path):
        from safetensors.torch import save_file

        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        handle, partial = tempfile.mkstemp(dir=folder)
        os.close(handle)
        save_file({k: v.contiguous() for k, v in self.layers.state_dict().items()}, partial)
        os.replace(partial, path)

    def load(self, path):
        from safetensors.torch import load_file

        self.layers.load_state_dict(load_file(str(path)))


@hookimpl
def delbench_register_backbones():
    return [LinearPatchAutoencoder]
'''


def _install(tmp_path: Path, name: str, source: str) -> Path:
    project = tmp_path / f"src_{name}"
    project.mkdir()
    (project / "setup.cfg").write_text(SETUP_CFG.format(name=name))
    (project / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=64"]\nbuild-backend = "setuptools.build_meta"\n')
    (project / f"{name}.py").write_text(source)
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(target), str(project)], check=True,
                   capture_output=True, text=True)
    return target


def _delbench(site: Path, *args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "DELBENCH_DISABLE_PLUGIN_AUTOLOAD"}
    env.update({"PYTHONPATH": str(site), **(env_extra or {})})
    return subprocess.run([sys.executable, "-m", "delbench", *args], capture_output=True, text=True, env=env)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("thirdparty")
    _install(tmp_path, "delbench_first_items", GOOD_PLUGIN)
    _install(tmp_path, "delbench_farthest_from_mean", TEMPLATE_SELECTOR_PLUGIN)
    _install(tmp_path, "delbench_last_items", SELECT_ONLY_PLUGIN)
    _install(tmp_path, "delbench_linear_patch_autoencoder", BACKBONE_PLUGIN)
    return _install(tmp_path, "delbench_broken_plugin", BROKEN_PLUGIN)


def test_installed_entry_point_shows_in_list(site):
    result = _delbench(site, "list", "selectors", "--format", "json")
    assert result.returncode == 0, result.stderr
    entries = {e["name"]: e for e in json.loads(result.stdout)}
    assert entries["first_items"]["version"] == "0.3.1"
    assert entries["first_items"]["plugin"] == "delbench_first_items"
    assert "meddel" in entries  # built-ins still there


def test_broken_plugin_is_reported_and_others_load(site):
    result = _delbench(site, "list", "selectors")
    assert result.returncode == 0
    assert "delbench_broken_plugin" in result.stderr and "broken on purpose" in result.stderr
    assert "first_items" in result.stdout


def test_autoload_switch_hides_entry_points(site):
    result = _delbench(site, "list", "selectors", "--format", "json",
                       env_extra={"DELBENCH_DISABLE_PLUGIN_AUTOLOAD": "1"})
    names = {e["name"] for e in json.loads(result.stdout)}
    assert "first_items" not in names and "random" in names


def test_third_party_selector_passes_the_contract_checker(site, monkeypatch):
    monkeypatch.syspath_prepend(str(site))
    from delbench.testing import check_selector
    from delbench_first_items import FirstItems

    check_selector(FirstItems)


def test_a_selector_that_subclasses_selector_and_implements_select_works(site, monkeypatch, tmp_path):
    """The plugin guide's second way: subclass Selector, write select itself (no choose). It is
    built, listed, passes the checker, takes its parameters from select, and selects through
    its entry point in a fresh process."""
    monkeypatch.syspath_prepend(str(site))
    from delbench.sdk.params import parameter_space
    from delbench.testing import check_selector
    from delbench_last_items import LastItems

    check_selector(LastItems)
    assert parameter_space("selector", LastItems).names == ("stride",)
    listed = _delbench(site, "list", "selectors", "--format", "json")
    assert "last_items" in {e["name"] for e in json.loads(listed.stdout)}, listed.stderr
    out = tmp_path / "subset.npy"
    result = _delbench(site, "select", "--dataset", "synthetic_endoscopy", "--selector", "last_items", "--ratio",
                       "0.1", "--dataset-param", "num_frames=40", "image_size=16", "--set", "stride=2",
                       "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    import numpy as np
    assert np.load(out).tolist() == [33, 35, 37, 39]
    bad = _delbench(site, "select", "--dataset", "synthetic_endoscopy", "--selector", "last_items", "--ratio",
                    "0.1", "--dataset-param", "num_frames=40", "--set", "strides=2", "--out", str(out))
    assert bad.returncode == 1 and "unknown parameter 'strides' (did you mean 'stride'?)" in bad.stderr


def test_a_selector_class_with_neither_choose_nor_select_cannot_be_built():
    from delbench.sdk import Selector

    class Nothing(Selector):
        name = "nothing"

    with pytest.raises(TypeError, match="neither choose .* nor select"):
        Nothing()


def test_third_party_selector_and_backbone_pass_the_contract_checkers(site, monkeypatch):
    monkeypatch.syspath_prepend(str(site))
    from delbench.testing import check_backbone, check_selector
    from delbench_farthest_from_mean import FarthestFromMean
    from delbench_linear_patch_autoencoder import LinearPatchAutoencoder

    check_selector(FarthestFromMean)
    check_backbone(LinearPatchAutoencoder, params={"image_size": 32})
    for module in ("delbench_farthest_from_mean", "delbench_last_items", "delbench_linear_patch_autoencoder"):
        source = (Path(site) / f"{module}.py").read_text()
        assert "delbench_plugins" not in source and "from delbench." not in source.replace("from delbench.sdk ", "")


@pytest.mark.slow  # a whole tiny run in a fresh process: ~20 s on a busy 2-core machine
def test_third_party_selector_and_backbone_run_through_delbench_run(site, tmp_path):
    tiny = Path(__file__).parent / "configs" / "tiny.py"
    protocol = tmp_path / "third_party.py"
    protocol.write_text(
        f"_base_ = [{str(tiny)!r}]\n"
        "backbone = dict(_delete_=True, name='linear_patch_autoencoder', params=dict(image_size=32))\n"
        "selectors = [dict(name='full', ratios=[1.0]),\n"
        "             dict(name='farthest_from_mean', ratios=[0.1], params=dict(power=1.0)),\n"
        "             dict(name='last_items', ratios=[0.1], params=dict(stride=2))]\n")
    work = tmp_path / "run"
    result = _delbench(site, "run", str(protocol), "--work-dir", str(work), "--no-progress", "--quiet")
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [json.loads(line) for line in (work / "results.jsonl").read_text().splitlines()]
    assert {row["selector"] for row in rows} == {"full", "farthest_from_mean[power=1.0]", "last_items[stride=2]"}
    assert all(row["status"] == "ok" and row["backbone"] == "linear_patch_autoencoder" for row in rows)
    assert {row["selector_version"] for row in rows if row["selector_name"] == "farthest_from_mean"} == {"0.2"}
    assert _delbench(site, "verify", str(work)).returncode == 0
