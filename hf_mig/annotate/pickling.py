"""Pickling by configuration, so ``Dataset.map`` fingerprints and ``num_proc`` workers work.

``datasets`` fingerprints a map function by hashing its pickle, and ``num_proc`` workers receive
it pickled. Classes deriving from :class:`PicklesByConfig` pickle to their configuration plus
``hf_mig.__version__`` only: never a loaded model, cached matrices or counters. Two instances with
the same configuration therefore hash alike (the ``datasets`` cache hits on re-runs), loading the
model does not change the hash, and a new ``hf_mig`` version misses the cache.

A configuration that names model files by path or Hub id is not enough to key a cache: classes
that load such models add the models' content identity (:mod:`hf_mig.models.identity`) to what
they pickle by overriding :meth:`PicklesByConfig._state_config`, and drop it again in
:meth:`PicklesByConfig._restore_state`, so weights replaced in place change the hash.
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)


class PicklesByConfig:
    """Mixin. Subclasses keep their configuration in ``self._config`` and rebuild everything
    else from it in ``_setup(config)``."""

    _config: dict[str, Any]

    def _setup(self, config: dict[str, Any]) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _state_config(self) -> dict[str, Any]:
        """The configuration as it is pickled (a copy); subclasses may add derived keys (e.g.
        model content identities) that :meth:`_restore_state` removes."""
        return dict(self._config)

    def __getstate__(self) -> dict[str, Any]:
        import hf_mig

        return {"config": self._state_config(), "hf_mig_version": hf_mig.__version__}

    def _restore_state(self, state: dict[str, Any]) -> None:
        self._setup(dict(state["config"]))

    def __setstate__(self, state: dict[str, Any]) -> None:
        import hf_mig

        if state.get("hf_mig_version") != hf_mig.__version__:
            logger.warning(
                "%s pickled by hf_mig %s is restored by hf_mig %s",
                type(self).__name__,
                state.get("hf_mig_version"),
                hf_mig.__version__,
            )
        self._restore_state(state)

    def __reduce__(self) -> tuple[Any, ...]:
        # Both pickling (num_proc workers) and datasets' fingerprint Hasher go through here.
        return (_restore, (type(self), self.__getstate__()))

    @property
    def fingerprint(self) -> str:
        """``datasets.fingerprint.Hasher.hash(self)``: the hash ``Dataset.map`` uses for this
        callable; it depends on the configuration and ``hf_mig.__version__`` only."""
        from datasets.fingerprint import Hasher

        return Hasher.hash(self)


def _restore(cls: type, state: dict[str, Any]) -> Any:
    """Unpickle an instance of ``cls`` from its ``__getstate__`` output."""
    obj = cls.__new__(cls)
    obj.__setstate__(state)
    return obj
