"""Config helpers shared by the launchers: unknown ``--config.x`` keys fail with one clear line and a suggestion.

``ml_collections`` turns an unknown override such as ``--config.train.batch_sise=8`` into a ``KeyError`` traceback
from inside flag parsing, suggesting only sibling names. Launchers pass :func:`parse_flags` to ``absl.app.run``
(``app.run(main, flags_parser=parse_flags)``): it loads the config without the overrides, checks every override path,
and exits with ``FATAL Flags parsing error: unknown config key 'train.batch_sise'; did you mean 'train.batch_size'?``
before the real parse. :func:`apply_overrides` gives the same check to code and notebooks.

Define the flag without a default (``config_flags.DEFINE_config_file("config", None)``): a default config is parsed
with the overrides when the flag is defined, before any parser can intervene.
"""

import difflib
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import ml_collections
from absl import app, flags


class UnknownConfigKeyError(ValueError):
    """A config override names a key the config does not have."""


def config_keys(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
    """Every dotted key of ``config``, sections included (``"train"``, ``"train.batch_size"``, ...)."""
    keys = []
    for name, value in config.items():
        path = f"{prefix}{name}"
        keys.append(path)
        if isinstance(value, ml_collections.ConfigDict):
            keys.extend(config_keys(value, f"{path}."))
    return keys


def unknown_key_message(config: ml_collections.ConfigDict, key: str, flag_name: str = "config") -> str:
    """One line naming ``key``, the closest valid key, and the valid keys of its section."""
    keys = config_keys(config)
    close = difflib.get_close_matches(key, keys, n=1, cutoff=0.5)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    section, _, _ = key.rpartition(".")
    while section and section not in keys:
        section, _, _ = section.rpartition(".")
    siblings = [k for k in keys if k.rpartition(".")[0] == section]
    where = f"'{section}'" if section else f"--{flag_name}"
    return f"unknown config key '{key}'{hint} Valid keys of {where}: {', '.join(siblings)}"


def _has_key(config: ml_collections.ConfigDict, key: str) -> bool:
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, ml_collections.ConfigDict) or part not in node:
            return False
        node = node[part]
    return True


def check_keys(config: ml_collections.ConfigDict, keys: Sequence[str], flag_name: str = "config") -> None:
    """Raises :class:`UnknownConfigKeyError` for the first of ``keys`` (dotted) missing from ``config``."""
    for key in keys:
        if not _has_key(config, key):
            raise UnknownConfigKeyError(unknown_key_message(config, key, flag_name))


def apply_overrides(config: ml_collections.ConfigDict, overrides: Mapping[str, Any]) -> ml_collections.ConfigDict:
    """Sets dotted ``overrides`` on a copy of ``config`` after checking every key exists (types are checked by
    ml_collections: an int field rejects a string)."""
    check_keys(config, list(overrides))
    config = ml_collections.ConfigDict(config)
    config.update_from_flattened_dict(dict(overrides))
    return config


def override_paths(argv: Sequence[str], flag_name: str = "config") -> list[str]:
    """The dotted paths of ``--config.<path>[=value]`` (and ``--noconfig.<path>``) arguments in ``argv``."""
    pattern = re.compile(rf"^--?(?:no)?{re.escape(flag_name)}\.([^=]+)")
    return [m.group(1) for arg in argv if (m := pattern.match(arg))]


def parse_flags(argv: list[str], flag_name: str = "config") -> list[str]:
    """``absl.app.run`` flags parser that rejects unknown ``--<flag_name>.x`` keys with a suggestion.

    The config flag reads its overrides from ``sys.argv``, so the first pass temporarily removes them there to load
    the bare config; the second pass is the normal parse.
    """
    paths = override_paths(argv, flag_name)
    if paths and flag_name in flags.FLAGS:
        bare = [a for a in argv if not override_paths([a], flag_name)]
        saved_argv, sys.argv = sys.argv, bare
        try:
            app.parse_flags_with_usage(bare)
            config = flags.FLAGS[flag_name].value
        finally:
            sys.argv = saved_argv
            flags.FLAGS.unparse_flags()
        if isinstance(config, ml_collections.ConfigDict):
            try:
                check_keys(config, paths, flag_name)
            except UnknownConfigKeyError as e:
                sys.stderr.write(f"FATAL Flags parsing error: {e}\n")
                sys.exit(1)
    return app.parse_flags_with_usage(argv)
