"""Installed versions of Python packages, for cache keys that must change when the code that
computes a cached value does."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["package_versions"]


def package_versions(packages: Iterable[str]) -> dict[str, str]:
    """``{package: installed version}``, ``"absent"`` for a package that is not installed."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for package in packages:
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            out[package] = "absent"
    return out
