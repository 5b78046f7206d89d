"""TagVocabulary: normalisation, frequency filter, near-duplicate merging, top-K, mapping,
persistence, the map callable and ``hf-mig vocab``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hf_mig.annotate.vocabulary import (
    TagVocabulary,
    lemmatize_word,
    normalize_tag,
    resolve_lemmatizer,
)


def test_rule_lemmas():
    cases = {
        "calculations": "calculation",
        "queries": "query",
        "classes": "class",
        "watches": "watch",
        "analyses": "analysis",
        "children": "child",
        "analysis": "analysis",
        "news": "news",
        "physics": "physics",
        "status": "status",
        "programming": "programming",
        "css": "css",
        "c++": "c++",
        "apis": "api",
    }
    assert {w: lemmatize_word(w, "rules") for w in cases} == cases
    assert normalize_tag("  Data   Analyses\t", "rules") == "data analysis"
    assert normalize_tag("   ", "rules") == ""
    assert normalize_tag("Python Programming", "none") == "python programming"


def test_lemminflect_nouns_only_from_its_dictionary():
    pytest.importorskip("lemminflect")
    assert resolve_lemmatizer("auto") == "lemminflect"
    assert normalize_tag("Mathematical Calculations", "lemminflect") == "mathematical calculation"
    # -ing nouns and unknown words stay: tags keep their meaning
    assert normalize_tag("creative writing", "lemminflect") == "creative writing"
    assert normalize_tag("rest api", "lemminflect") == "rest api"
    assert normalize_tag("kubernetes", "lemminflect") == "kubernetes"
    assert normalize_tag("SQL queries", "lemminflect") == "sql query"


def test_build_stages_counts_and_top_k():
    rows = [
        ["Math", "Python Programming", "python programming"],  # a repeat counts once per row
        ["math", "Cooking Recipes"],
        ["cooking recipe", "poetry"],
        ["MATH", "cooking recipe", "rare tag"],
        None,
    ]
    vocab = TagVocabulary.build(rows, min_count=2, lemmatizer="rules")
    assert vocab.labels == ["cooking recipe", "math"]  # by count, then alphabetical
    assert vocab.counts == {"math": 3, "cooking recipe": 3}
    report = vocab.report()
    assert report["rows"] == 5 and report["tag_occurrences"] == 10
    assert report["raw_tags"] == 9 and report["normalized_tags"] == 5
    assert report["after_min_count"] == 2 and report["after_top_k"] == 2
    assert vocab.map("Cooking Recipes") == "cooking recipe"
    assert vocab.map("python programming") is None  # seen in one row only
    assert vocab.map("unknown") is None and "MATH" in vocab and "poetry" not in vocab

    top = TagVocabulary.build(rows, min_count=1, top_k=3, lemmatizer="rules")
    assert top.labels == ["cooking recipe", "math", "poetry"]
    assert top.report()["after_min_count"] == 5 and len(top) == 3
    assert top.map("rare tag") is None
    # a flat list counts every occurrence
    flat = TagVocabulary.build(["a b", "A B", "c"], min_count=2, lemmatizer="none")
    assert flat.labels == ["a b"] and flat.counts == {"a b": 2}


def test_bad_arguments():
    with pytest.raises(ValueError, match="min_count"):
        TagVocabulary.build([["a"]], min_count=0)
    with pytest.raises(ValueError, match="top_k"):
        TagVocabulary.build([["a"]], top_k=0)
    with pytest.raises(ValueError, match="merge_threshold"):
        TagVocabulary.build([["a"]], merge_threshold=1.5)
    with pytest.raises(TypeError, match="strings"):
        TagVocabulary.build([["a", 3]])
    with pytest.raises(ValueError, match="lemmatizer"):
        TagVocabulary.build([["a"]], lemmatizer="porter")


def _axis_embedder(directions: dict[str, list[float]]):
    def embed(texts: list[str]) -> np.ndarray:
        return np.asarray([directions[t] for t in texts], dtype=np.float32)

    return embed


def test_merge_connected_components_most_frequent_wins():
    # cos(a, b) = 0.95, cos(b, c) = 0.95, cos(a, c) ~ 0.81: a chain, one component at 0.9
    angle = np.arccos(0.95)
    directions = {
        "python coding": [1.0, 0.0, 0.0],
        "python programming": [np.cos(angle), np.sin(angle), 0.0],
        "programming in python": [np.cos(2 * angle), np.sin(2 * angle), 0.0],
        "cooking": [0.0, 0.0, 1.0],
    }
    rows = (
        [["python programming"]] * 5
        + [["Python Coding"]] * 2
        + [["programming in python"]] * 3
        + [["cooking"]] * 4
    )
    vocab = TagVocabulary.build(
        rows, min_count=2, merge_threshold=0.9, embedder=_axis_embedder(directions)
    )
    assert vocab.labels == ["python programming", "cooking"]
    assert vocab.counts == {"python programming": 10, "cooking": 4}
    assert vocab.members["python programming"] == [
        "programming in python",
        "python coding",
        "python programming",
    ]
    assert vocab.map("Python Coding") == "python programming"
    assert vocab.report()["largest_merged_group"] == 3
    assert vocab.report()["after_merge"] == 2
    # above the chain's similarity nothing merges
    strict = TagVocabulary.build(
        rows, min_count=2, merge_threshold=0.96, embedder=_axis_embedder(directions)
    )
    assert len(strict) == 4 and strict.map("python coding") == "python coding"


def test_merge_with_minilm():
    pytest.importorskip("sentence_transformers")
    tags = ["python programming", "programming in python", "python coding", "cooking recipe"]
    tags += ["recipe", "math", "mathematics"]
    rows = [[t] for t in tags for _ in range(2)] + [["python programming"], ["mathematics"]]
    vocab = TagVocabulary.build(rows, min_count=2, merge_threshold=0.88, lemmatizer="none")
    assert vocab.map("python coding") == "python programming"
    assert vocab.map("programming in python") == "python programming"
    assert vocab.map("math") == "mathematics"
    assert vocab.map("recipe") == "recipe" and vocab.map("cooking recipe") == "cooking recipe"
    assert vocab.config["embedder"] == "sentence-transformers/all-MiniLM-L6-v2"


def test_map_callable_save_load_and_datasets(tmp_path: Path):
    import datasets

    rows = [["Math", "Cooking Recipes"], ["math", "cooking recipe"], ["poetry", "math"]]
    vocab = TagVocabulary.build(rows, min_count=2, lemmatizer="rules")
    batch = {"labels": [["MATH", "math", "poetry", "Cooking Recipes"], None, []]}
    out = vocab(batch)
    assert out["labels"] == [["math", "cooking recipe"], [], []]
    assert out["labels_dropped"] == [1, 0, 0]
    with pytest.raises(ValueError, match="row 7"):
        vocab({"labels": [[1]]}, [7])

    path = tmp_path / "vocab.json"
    vocab.save(path)
    again = TagVocabulary.load(path)
    assert again.labels == vocab.labels and again.mapping == vocab.mapping
    assert again.counts == vocab.counts and again.report() == vocab.report()
    data = json.loads(path.read_text())
    assert data["format"] == "hf_mig.TagVocabulary" and data["labels"] == ["math", "cooking recipe"]
    (tmp_path / "list.json").write_text('["a"]')
    with pytest.raises(ValueError, match="not a TagVocabulary"):
        TagVocabulary.load(tmp_path / "list.json")
    with pytest.raises(FileNotFoundError):
        TagVocabulary.load(tmp_path / "missing.json")

    ds = datasets.Dataset.from_dict({"labels": [["poetry"], ["Math", "Poetry"], ["x"]] * 2})
    mapped = ds.map(again, batched=True, batch_size=2)
    assert mapped["labels"] == [[], ["math"], []] * 2
    assert mapped["labels_dropped"] == [1, 1, 1] * 2
    renamed = ds.map(again, batched=True, fn_kwargs={"output_column": "canonical"})
    assert renamed["canonical"][1] == ["math"] and renamed["labels"][1] == ["Math", "Poetry"]
    assert ds.map(vocab, batched=True)._fingerprint == ds.map(again, batched=True)._fingerprint


def test_cli_vocab(tmp_path: Path, capsys):
    from hf_mig.cli.main import main

    pool = tmp_path / "tagged.jsonl"
    records = [
        {"labels": ["Math", "Cooking Recipes"]},
        {"labels": ["math", "cooking recipe", "poetry"]},
        {"labels": ["poetry", "math"]},
        {"labels": []},
    ]
    pool.write_text("".join(json.dumps(r) + "\n" for r in records))
    out = tmp_path / "vocab.json"
    labels_out = tmp_path / "labels.json"
    args = ["vocab", str(pool), "--out", str(out), "--min-count", "2", "--top-k", "2"]
    assert main([*args, "--lemmatizer", "rules", "--labels-out", str(labels_out)]) == 0
    printed = capsys.readouterr().out
    assert "normalised" in printed and "top-k (2): 2" in printed
    assert json.loads(labels_out.read_text()) == ["math", "cooking recipe"]
    assert TagVocabulary.load(out).map("Cooking Recipes") == "cooking recipe"
    assert main(["vocab", str(pool), "--out", str(out), "--labels-column", "tags"]) == 2
    assert "no 'tags' column" in capsys.readouterr().err
