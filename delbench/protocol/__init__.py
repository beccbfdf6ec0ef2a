"""Protocols: a protocol file (``benchmarks/*.py``, mmengine ``Config`` inheriting
``benchmarks/_base_/``) read, every key and plugin parameter validated once, into a frozen
:class:`Protocol` passed down to the run. Everything that defines a result is inside it, so
its canonical JSON hash (``config_sha256``) identifies comparable results.

- :mod:`~delbench.protocol.specs`: the typed specs and the hashes;
- :mod:`~delbench.protocol.parse`: plain data → specs, one builder per section;
- :mod:`~delbench.protocol.checks`: what only the installed plugins can tell;
- :mod:`~delbench.protocol.load`: reading a file with mmengine.
"""
from delbench.protocol.checks import check_plugins
from delbench.protocol.load import load_config, load_protocol
from delbench.protocol.parse import check_values, protocol_from_dict, protocol_from_json
from delbench.protocol.specs import (DEFAULT_SIGNIFICANCE, UNHASHED_FIELDS, EmbeddingSpec, ExecutionSpec,
                                     GeneralizationSpec, PluginSpec, PretrainSpec, Protocol, ReferenceSpec,
                                     SelectorSpec, TaskSpec, content_hash, protocol_sha256)

__all__ = [
    "DEFAULT_SIGNIFICANCE", "UNHASHED_FIELDS", "EmbeddingSpec", "ExecutionSpec", "GeneralizationSpec", "PluginSpec",
    "PretrainSpec", "Protocol", "ReferenceSpec", "SelectorSpec", "TaskSpec", "check_plugins", "check_values",
    "content_hash", "load_config", "load_protocol", "protocol_from_dict", "protocol_from_json", "protocol_sha256",
]
