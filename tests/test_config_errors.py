"""Unknown config keys: one clear line with the closest valid key, from code and from an absl launcher."""

import subprocess
import sys
import textwrap
from pathlib import Path

import ml_collections
import pytest

from experiments.configs.common import UnknownConfigKeyError, apply_overrides, config_keys, override_paths


def _config():
    c = ml_collections.ConfigDict()
    c.model = {"dim": 64, "num_latents": 1}
    c.train = {"batch_size": 64, "steps": 100, "optim": {"peak_lr": 4e-3}}
    c.seed = 0
    return c


def test_config_keys_lists_sections_and_leaves():
    assert sorted(config_keys(_config())) == [
        "model",
        "model.dim",
        "model.num_latents",
        "seed",
        "train",
        "train.batch_size",
        "train.optim",
        "train.optim.peak_lr",
        "train.steps",
    ]


@pytest.mark.parametrize(
    ("key", "suggestion"),
    [
        ("train.batch_sise", "train.batch_size"),
        ("trian.steps", "train.steps"),  # a typo in the section, which ml_collections cannot suggest
        ("train.optim.peaklr", "train.optim.peak_lr"),
        ("model.num_latent", "model.num_latents"),
    ],
)
def test_apply_overrides_suggests_closest_key(key, suggestion):
    with pytest.raises(UnknownConfigKeyError, match=f"unknown config key '{key}'; did you mean '{suggestion}'"):
        apply_overrides(_config(), {key: 1})


def test_apply_overrides_sets_values_on_a_copy():
    base = _config()
    new = apply_overrides(base, {"train.optim.peak_lr": 1e-3, "seed": 3})
    assert new.train.optim.peak_lr == 1e-3 and new.seed == 3 and base.seed == 0


def test_override_paths():
    argv = ["prog", "--config=x.py:small", "--config.train.steps=5", "--noconfig.flag", "--workdir=/tmp"]
    assert override_paths(argv) == ["train.steps", "flag"]


LAUNCHER = textwrap.dedent(
    """
    from absl import app
    from ml_collections import config_flags
    from experiments.configs.common import parse_flags

    _CONFIG = config_flags.DEFINE_config_file("config", None)

    def main(argv):
        print("RAN", _CONFIG.value.train.batch_size, _CONFIG.value.seed)

    app.run(main, flags_parser=parse_flags)
    """
)

CONFIG_FILE = textwrap.dedent(
    """
    import ml_collections

    def get_config(arg="small"):
        return ml_collections.ConfigDict({"train": {"batch_size": 64 if arg == "small" else 128}, "seed": 0})
    """
)


def _launch(tmp_path, *args):
    (tmp_path / "launcher.py").write_text(LAUNCHER)
    (tmp_path / "cfg.py").write_text(CONFIG_FILE)
    return subprocess.run(
        [sys.executable, str(tmp_path / "launcher.py"), f"--config={tmp_path / 'cfg.py'}:small", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=str(Path(__file__).parents[1]),
    )


def test_launcher_rejects_unknown_key_in_one_line(tmp_path):
    proc = _launch(tmp_path, "--config.train.batch_sise=8")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "unknown config key 'train.batch_sise'; did you mean 'train.batch_size'?" in proc.stderr


def test_launcher_applies_valid_overrides(tmp_path):
    proc = _launch(tmp_path, "--config.train.batch_size=8", "--config.seed=3")
    assert proc.returncode == 0, proc.stderr
    assert "RAN 8 3" in proc.stdout
