"""Where things live: the cache folder and library-wide defaults."""

from __future__ import annotations

import os
from pathlib import Path

#: Bumped whenever a change in this library changes the numbers it caches, so that
#: stale activations are never reused (it is part of every cache key).
CACHE_VERSION = 1


def repo_root() -> Path | None:
    """The repository this package was installed from (editable install), if any."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "_toc.yml").is_file() else None


def cache_dir() -> Path:
    """Root of the cache: ``$REDUNDANCY_CACHE``, else ``data/cache`` in the repository,
    else ``~/.cache/redundancy``. Everything fetched or computed lives under it."""
    env = os.environ.get("REDUNDANCY_CACHE")
    if env:
        path = Path(env).expanduser()
    elif repo_root() is not None:
        path = repo_root() / "data" / "cache"
    else:
        path = Path.home() / ".cache" / "redundancy"
    path.mkdir(parents=True, exist_ok=True)
    return path
