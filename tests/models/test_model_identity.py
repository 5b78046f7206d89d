"""Caches keyed by model content: folder and file digests, Hub commits, and the scorer, tagger and
response caches missing when weights are replaced in place under the same path."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

torch = pytest.importorskip("torch")
datasets = pytest.importorskip("datasets")

from hf_mig.annotate.scorers import DeitaScorer, IFDScorer  # noqa: E402
from hf_mig.annotate.taggers import InsTagTagger  # noqa: E402
from hf_mig.models.generation import TransformersBackend  # noqa: E402
from hf_mig.models.identity import (  # noqa: E402
    ModelIdentityError,
    clear_identity_cache,
    identity_files,
    model_identity,
)
from hf_mig.testing import build_tiny_llama  # noqa: E402

ROWS = [
    [
        {"role": "user", "content": "Write a short poem about the sea."},
        {"role": "assistant", "content": "Waves fold in silver light,\nthe tide keeps time."},
    ],
    [
        {"role": "user", "content": "What is 2 + 2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "And 3 + 3? Explain."},
        {"role": "assistant", "content": "Six, because three plus three is six."},
    ],
    [
        {"role": "user", "content": "List three primary colours, one per line, please."},
        {"role": "assistant", "content": "Red\nBlue\nYellow"},
    ],
    [
        {"role": "user", "content": "Translate 'good morning' into French and German."},
        {"role": "assistant", "content": "French: bonjour. German: guten Morgen."},
    ],
]


@pytest.fixture(scope="module")
def builds(tmp_path_factory) -> dict[str, Path]:
    """Two tiny Llamas with the same tokenizer and architecture, different weights."""
    root = tmp_path_factory.mktemp("builds")
    seed0 = build_tiny_llama(root / "seed0")
    seed1 = build_tiny_llama(root / "seed1", seed=1)
    # the seed-0 folder with the seed-1 weights: what a folder is after replace_weights_in_place
    swapped = Path(shutil.copytree(seed0, root / "swapped"))
    shutil.copyfile(seed1 / "model.safetensors", swapped / "model.safetensors")
    return {"seed0": seed0, "seed1": seed1, "swapped": swapped}


@pytest.fixture
def model_dir(tmp_path, builds) -> Path:
    """A private copy of the seed-0 model, whose weights a test may replace."""
    return Path(shutil.copytree(builds["seed0"], tmp_path / "model"))


def replace_weights_in_place(folder: Path, source: Path) -> None:
    """Overwrite ``folder/model.safetensors`` with ``source``'s bytes (same name, same size), in
    place (same inode), and put the old modification time back."""
    target = folder / "model.safetensors"
    before = target.stat()
    assert (source / "model.safetensors").stat().st_size == before.st_size
    with open(source / "model.safetensors", "rb") as src, open(target, "r+b") as dst:
        shutil.copyfileobj(src, dst)
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = target.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (
        before.st_ino,
        before.st_size,
        before.st_mtime_ns,
    )
    assert target.read_bytes() == (source / "model.safetensors").read_bytes()


# ---------------------------------------------------------------- identities


def test_folder_identity_is_content_not_path_or_time(tmp_path, builds, model_dir):
    first = model_identity(model_dir)
    assert first.startswith("sha256:") and len(first) == len("sha256:") + 64
    assert model_identity(builds["seed0"]) == first  # same bytes elsewhere: same identity
    assert model_identity(builds["seed1"]) != first
    os.utime(model_dir / "model.safetensors", ns=(1, 10**18))  # new times, same bytes
    assert model_identity(model_dir) == first
    replace_weights_in_place(model_dir, builds["seed1"])  # same name, size and mtime
    assert model_identity(model_dir) == model_identity(builds["swapped"]) != first


def test_files_that_do_not_change_outputs_are_not_hashed(model_dir):
    before = model_identity(model_dir)
    (model_dir / "README.md").write_text("# notes\n")
    (model_dir / "optimizer.pt").write_bytes(b"state" * 100)
    (model_dir / ".gitattributes").write_text("*.safetensors filter=lfs\n")
    (model_dir / "checkpoint-10").mkdir()
    (model_dir / "checkpoint-10" / "model.safetensors").write_bytes(b"old")
    (model_dir / "model-q4.gguf").write_bytes(b"GGUF" + b"\0" * 64)
    assert model_identity(model_dir) == before
    names = {p.name for p in identity_files(model_dir)}
    assert {"model.safetensors", "config.json", "tokenizer.json"} <= names
    assert names.isdisjoint({"README.md", "optimizer.pt", ".gitattributes", "model-q4.gguf"})
    extra = model_dir / "additional_chat_templates" / "tools.jinja"  # read by from_pretrained
    extra.parent.mkdir()
    extra.write_text("{{ messages }}")
    assert model_identity(model_dir) != before
    extra.unlink()
    assert model_identity(model_dir) == before
    (model_dir / "config.json").rename(model_dir / "config.json.bak")  # renamed: other content
    assert model_identity(model_dir) != before


def test_a_gguf_file_is_hashed_alone(tmp_path):
    folder = tmp_path / "ggufs"
    folder.mkdir()
    (folder / "a.gguf").write_bytes(b"GGUF-a" * 1000)
    (folder / "b.gguf").write_bytes(b"GGUF-b" * 1000)
    a = model_identity(folder, file="a.gguf")
    assert a == model_identity(folder / "a.gguf") != model_identity(folder, file="b.gguf")
    (folder / "b.gguf").write_bytes(b"changed")
    assert model_identity(folder, file="a.gguf") == a
    with pytest.raises(ModelIdentityError, match="c.gguf"):
        model_identity(folder, file="c.gguf")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelIdentityError, match="no model file"):
        model_identity(tmp_path / "empty")


def test_hashing_is_memoised_per_process_and_logged(model_dir, builds, caplog):
    clear_identity_cache()
    with caplog.at_level(logging.INFO, logger="hf_mig.models.identity"):
        model_identity(model_dir)
        model_identity(model_dir)
    hashed = [r for r in caplog.records if "hashed" in r.getMessage()]
    assert len(hashed) == 1 and "MB/s" in hashed[0].getMessage()
    caplog.clear()
    replace_weights_in_place(model_dir, builds["seed1"])
    with caplog.at_level(logging.INFO, logger="hf_mig.models.identity"):
        model_identity(model_dir)
    hashed = [r.getMessage() for r in caplog.records if "hashed" in r.getMessage()]
    assert len(hashed) == 1  # only the replaced file is read again
    size = (model_dir / "model.safetensors").stat().st_size
    assert f"hashed {size / 1e6:.1f} MB" in hashed[0]


def fake_hub_cache(root: Path, repo: str, commit: str) -> Path:
    folder = root / ("models--" + repo.replace("/", "--"))
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / "main").write_text(commit)
    snapshot = folder / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    (snapshot / "config.json").write_text("{}")
    return folder


def test_hub_ids_are_identified_by_their_commit(tmp_path, monkeypatch):
    import huggingface_hub
    import huggingface_hub.constants as hub

    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "hub"))
    clear_identity_cache()
    one, two = "a" * 40, "b" * 40
    fake_hub_cache(tmp_path / "hub", "org/tiny", one)
    assert model_identity("org/tiny") == f"hf:org/tiny@{one}"  # offline: the cached ref
    assert model_identity("org/tiny", revision=two) == f"hf:org/tiny@{two}"
    fake_hub_cache(tmp_path / "hub", "org/tiny", two)
    clear_identity_cache()  # a new process
    assert model_identity("org/tiny") == f"hf:org/tiny@{two}"
    with pytest.raises(ModelIdentityError, match="'org/missing'.*HF_HUB_OFFLINE"):
        model_identity("org/missing")
    with pytest.raises(ModelIdentityError, match="neither an existing file or folder"):
        model_identity(str(tmp_path / "no" / "such" / "folder"))

    # online: the Hub's answer wins over a stale cache; when the Hub fails, the cache answers
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    newest = "c" * 40
    asked: list[tuple[str, str | None]] = []

    def model_info(self, repo_id, *, revision=None, timeout=None, **kwargs):
        asked.append((repo_id, revision))
        if repo_id.startswith("org/down"):
            raise ConnectionError("no route to the Hub")
        return SimpleNamespace(sha=newest)

    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", model_info)
    clear_identity_cache()
    assert model_identity("org/tiny") == f"hf:org/tiny@{newest}"
    assert model_identity("org/tiny") == f"hf:org/tiny@{newest}" and len(asked) == 1  # memoised
    fake_hub_cache(tmp_path / "hub", "org/down", one)
    assert model_identity("org/down") == f"hf:org/down@{one}"
    with pytest.raises(ModelIdentityError, match="ConnectionError: no route"):
        model_identity("org/down-and-not-cached")


# ---------------------------------------------------------------- the caches that use them


def pool_on_disk(tmp_path: Path) -> datasets.Dataset:
    """A pool loaded from disk, so ``Dataset.map`` writes (and reuses) cache files."""
    datasets.Dataset.from_dict({"messages": ROWS}).save_to_disk(str(tmp_path / "pool"))
    return datasets.load_from_disk(str(tmp_path / "pool"))


SCORERS = {
    "ifd": (lambda path: IFDScorer(model=str(path), batch_size=4, device="cpu"), "ifd"),
    "deita": (lambda path: DeitaScorer(model=str(path), batch_size=4, device="cpu"), "score"),
}


@pytest.mark.parametrize("name", sorted(SCORERS))
def test_scores_of_weights_replaced_in_place_are_not_served_from_the_cache(
    tmp_path, builds, model_dir, name
):
    make, column = SCORERS[name]
    pool = pool_on_disk(tmp_path)
    first = make(model_dir)
    scored = pool.map(first, batched=True, with_indices=True)
    assert first.stats.rows == len(pool)

    again = make(model_dir)
    cached = pool.map(again, batched=True, with_indices=True)
    assert again.stats.rows == 0  # the datasets cache answered: same content
    assert cached[column] == scored[column]
    before = first.fingerprint

    replace_weights_in_place(model_dir, builds["seed1"])
    assert first.fingerprint == before  # it holds the weights it loaded
    assert again.fingerprint != before  # it loaded nothing: it follows the files
    fresh = make(model_dir)
    assert fresh.fingerprint != first.fingerprint
    rescored = pool.map(fresh, batched=True, with_indices=True)
    assert fresh.stats.rows == len(pool)  # not served from the cache
    expected = make(builds["swapped"])({"messages": ROWS})[column]
    assert rescored[column] == pytest.approx(expected, rel=1e-5)
    assert rescored[column] != pytest.approx(scored[column], rel=1e-3)
    assert all(e is None for e in rescored[f"{name}_error"])


def test_response_cache_misses_when_weights_change(tmp_path, builds, model_dir, caplog):
    conversations = [[{"role": "user", "content": text}] for text in ("Hi", "Name a colour.")]

    def backend(path: Path) -> TransformersBackend:
        return TransformersBackend(path, device="cpu", cache=tmp_path / "cache", progress=False)

    first = backend(model_dir).generate(conversations, max_new_tokens=8)
    rerun = backend(model_dir)
    with caplog.at_level(logging.INFO, logger="hf_mig.models.generation.base"):
        again = rerun.generate(conversations, max_new_tokens=8)
    assert all(r.cached for r in again) and rerun.stats.cache_hits == 2
    assert [r.text for r in again] == [r.text for r in first]

    replace_weights_in_place(model_dir, builds["seed1"])
    fresh = backend(model_dir)
    after = fresh.generate(conversations, max_new_tokens=8)
    assert not any(r.cached for r in after) and fresh.stats.cache_hits == 0
    reference = TransformersBackend(builds["swapped"], device="cpu", progress=False)
    expected = reference.generate(conversations, max_new_tokens=8)
    assert [r.text for r in after] == [r.text for r in expected]
    assert [r.text for r in after] != [r.text for r in first]
    assert fresh.describe()["model_content"] == model_identity(builds["swapped"])
    assert any("served from the response cache" in r.getMessage() for r in caplog.records)


def test_instag_fingerprint_follows_the_weights(builds, model_dir):
    tagger = InsTagTagger("transformers", str(model_dir), backend_options={"device": "cpu"})
    before = tagger.fingerprint
    assert InsTagTagger("openai", "served-name").content_identity() == {}
    assert tagger.content_identity() == {"model_content": model_identity(builds["seed0"])}
    replace_weights_in_place(model_dir, builds["seed1"])
    assert tagger.fingerprint != before
    assert tagger.content_identity() == {"model_content": model_identity(builds["swapped"])}
