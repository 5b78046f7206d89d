"""``hf-mig tag`` / ``score`` / ``merge`` against hostile outputs and damaged shards.

Existing outputs are refused before any work (never removed, ``OUT=.`` included), ``--overwrite``
replaces only the tool's own outputs, temporary folders are recognised by an unambiguous name,
and every shard file is checked against the sha256 recorded in its marker before a merge writes
anything.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import string
from pathlib import Path

import pytest
from openai_server import OpenAIServer

from hf_mig.cli.main import main
from hf_mig.data.io import load_pool
from hf_mig.runtime import sharding
from hf_mig.runtime.sharding import SHARD_MARKER, list_shards, shard_path

DATA_FILE = "data-00000-of-00001.arrow"


def _text(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(string.ascii_lowercase) for _ in range(n))


def write_pool(path: Path, rows: int = 6, chars: int = 40, seed: int = 0) -> Path:
    """A JSON Lines pool of ``rows`` two-turn chats of lowercase letters (``chars`` per turn)."""
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as fh:
        for _ in range(rows):
            messages = [
                {"role": "user", "content": _text(rng, chars)},
                {"role": "assistant", "content": _text(rng, chars)},
            ]
            fh.write(json.dumps({"messages": messages}) + "\n")
    return path


def score(pool: Path | str, out: Path | str, *extra: str) -> int:
    return main(["score", str(pool), str(out), "--scorer", "length", *extra])


def tag(pool: Path | str, out: Path | str, server: OpenAIServer, *extra: str) -> int:
    return main(
        ["tag", str(pool), str(out), "--backend", "openai", "--model", "m",
         "--base-url", server.base_url, "--max-retries", "0", "--no-cache", *extra]
    )  # fmt: skip


def tree(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` with its content (``None`` for folders)."""
    return {
        p.relative_to(root).as_posix(): (p.read_bytes() if p.is_file() else None)
        for p in sorted(root.rglob("*"))
    }


def temporaries(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if "hf-mig-tmp" in p.name]


@pytest.fixture
def server():
    with OpenAIServer() as srv:
        yield srv


@pytest.fixture
def pool(tmp_path) -> Path:
    return write_pool(tmp_path / "pool.jsonl")


# --------------------------------------------------------------------------------------
# existing outputs: refused before any work, never removed


@pytest.mark.parametrize("overwrite", [False, True])
def test_score_never_removes_a_folder_holding_other_files(tmp_path, pool, capsys, overwrite):
    out = tmp_path / "results"
    out.mkdir()
    (out / "notes.txt").write_text("mine", encoding="utf-8")
    (out / "state.json").write_text("{}", encoding="utf-8")
    before = tree(tmp_path)
    assert score(pool, out, *(["--overwrite"] if overwrite else [])) == 2
    err = capsys.readouterr().err
    assert f"{out}: the output exists" in err and "holding other files" in err
    assert tree(tmp_path) == before


def test_tag_never_removes_a_folder_holding_other_files(tmp_path, pool, server, capsys):
    out = tmp_path / "results"
    out.mkdir()
    (out / "notes.txt").write_text("mine", encoding="utf-8")
    before = tree(tmp_path)
    assert tag(pool, out, server, "--overwrite") == 2
    assert "holding other files" in capsys.readouterr().err
    assert server.requests == 0  # refused before any request
    assert tree(tmp_path) == before


@pytest.mark.parametrize("command", ["score", "tag"])
@pytest.mark.parametrize("overwrite", [False, True])
def test_out_dot_never_wipes_the_current_folder(
    tmp_path, monkeypatch, server, capsys, command, overwrite
):
    monkeypatch.chdir(tmp_path)
    write_pool(tmp_path / "pool.jsonl")
    (tmp_path / "keep.txt").write_text("precious", encoding="utf-8")
    before = tree(tmp_path)
    extra = ["--overwrite"] if overwrite else []
    if command == "score":
        assert score("pool.jsonl", ".", *extra) == 2
    else:
        assert tag("pool.jsonl", ".", server, *extra) == 2
        assert server.requests == 0
    assert "holding other files" in capsys.readouterr().err
    assert tree(tmp_path) == before


def test_existing_file_is_refused_before_the_model_loads(tmp_path, pool, server, capsys):
    out = tmp_path / "scored.jsonl"
    out.write_text("not yours\n", encoding="utf-8")
    missing_model = tmp_path / "no-such-model"  # loading it would fail with another error
    argv = ["score", str(pool), str(out), "--scorer", "ifd", "--model", str(missing_model)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"{out}: the output file exists; pass --overwrite" in err
    assert tag(pool, out, server) == 2
    assert "the output file exists" in capsys.readouterr().err and server.requests == 0
    assert out.read_text(encoding="utf-8") == "not yours\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pool.jsonl", "scored.jsonl"]


@pytest.mark.parametrize("name", ["scored.jsonl", "scored.parquet", "scored"])
def test_overwrite_replaces_the_tools_own_output(tmp_path, pool, capsys, name):
    out = tmp_path / name
    assert score(pool, out) == 0
    assert "wrote 6 rows to" in capsys.readouterr().out
    first = load_pool(out)["messages"]
    other = write_pool(tmp_path / "other.jsonl", rows=3, seed=1)
    assert score(other, out) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert load_pool(out)["messages"] == first  # unchanged
    assert score(other, out, "--overwrite") == 0
    assert "wrote 3 rows to" in capsys.readouterr().out
    replaced = load_pool(out)
    assert replaced["messages"] == load_pool(other)["messages"] and len(replaced) == 3
    assert temporaries(tmp_path) == []


def test_tag_overwrite_and_rows_written(tmp_path, pool, server, capsys):
    out = tmp_path / "tagged.jsonl"
    assert tag(pool, out, server) == 0
    assert "wrote 6 rows to" in capsys.readouterr().out and server.requests == 6
    assert tag(pool, out, server) == 2 and server.requests == 6
    assert tag(pool, out, server, "--overwrite") == 0 and server.requests == 12
    assert len(load_pool(out)) == 6 and temporaries(tmp_path) == []


# --------------------------------------------------------------------------------------
# arguments and outputs checked before the pool is read


def test_arguments_are_checked_before_the_pool_is_read(tmp_path, server, capsys):
    missing = tmp_path / "missing.jsonl"  # reading it would fail with "no such file"
    existing = tmp_path / "out.jsonl"
    existing.write_text("x\n", encoding="utf-8")
    plain = tmp_path / "results"  # a file without a suffix
    plain.write_text("y\n", encoding="utf-8")
    cases = [
        (["--shard", "2/2"], tmp_path / "shards", "shard index must be in [0, 1]"),
        (["--shard", "0/2"], tmp_path / "o.jsonl", "folder of shards"),
        (["--shard", "0/2"], plain, "exists and is not a folder"),
        ([], tmp_path / "o.txt", "cannot write a .txt file"),
        ([], tmp_path / "o.jsonl.gz", "cannot write a .gz file"),
        ([], existing, "the output file exists"),
    ]
    for extra, out, message in cases:
        assert score(missing, out, *extra) == 2
        assert message in capsys.readouterr().err, (extra, out)
        assert tag(missing, out, server, *extra) == 2
        assert message in capsys.readouterr().err, (extra, out)
    assert server.requests == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl", "results"]
    assert existing.read_text(encoding="utf-8") == "x\n" and plain.read_text() == "y\n"


def test_the_pool_is_never_the_output(tmp_path, pool, capsys):
    before = pool.read_bytes()
    assert score(pool, pool, "--overwrite") == 2
    assert "the output is the input pool" in capsys.readouterr().err
    assert pool.read_bytes() == before


# --------------------------------------------------------------------------------------
# sharded outputs


def test_shards_live_beside_other_files_and_overwrite_redoes_one(tmp_path, pool, capsys):
    out = tmp_path / "shards"
    out.mkdir()
    (out / "README.txt").write_text("my notes", encoding="utf-8")
    assert score(pool, out, "--shard", "0/2") == 0
    assert "wrote 3 rows to" in capsys.readouterr().out
    assert score(pool, out, "--shard", "1/2") == 0
    shard0 = shard_path(out, 0, 2)
    data = shard0 / DATA_FILE
    healthy = data.read_bytes()
    assert score(pool, out, "--shard", "1/2") == 0  # complete: skipped
    printed = capsys.readouterr().out
    assert "already complete" in printed and "(3 rows): skipped" in printed
    data.write_bytes(healthy[:-1] + bytes([healthy[-1] ^ 0xFF]))
    assert score(pool, out, "--shard", "0/2") == 2  # complete but damaged: not skipped
    assert f"{shard0}: shard file {DATA_FILE} does not match" in capsys.readouterr().err
    assert main(["merge", str(out), str(tmp_path / "m.jsonl")]) == 2
    capsys.readouterr()
    assert score(pool, out, "--shard", "0/2", "--overwrite") == 0  # redone
    assert data.read_bytes() == healthy
    assert main(["merge", str(out), str(tmp_path / "m.jsonl")]) == 0
    assert "wrote 6 rows to" in capsys.readouterr().out
    assert load_pool(tmp_path / "m.jsonl")["messages"] == load_pool(pool)["messages"]
    assert (out / "README.txt").read_text(encoding="utf-8") == "my notes"
    assert temporaries(out) == []


def test_shard_folders_with_foreign_files_are_never_replaced(tmp_path, pool, capsys):
    out = tmp_path / "shards"
    assert score(pool, out, "--shard", "0/2") == 0
    (shard_path(out, 0, 2) / "mine.txt").write_text("keep", encoding="utf-8")
    unfinished = shard_path(out, 1, 2)
    unfinished.mkdir()
    (unfinished / "mine.txt").write_text("keep too", encoding="utf-8")
    capsys.readouterr()
    before = tree(tmp_path)
    assert score(pool, out, "--shard", "0/2", "--overwrite") == 2
    assert "holds files hf-mig did not write" in capsys.readouterr().err
    for extra in ([], ["--overwrite"]):
        assert score(pool, out, "--shard", "1/2", *extra) == 2
        assert "not a complete shard" in capsys.readouterr().err
    assert tree(tmp_path) == before


def test_only_the_tools_own_stale_temporaries_are_removed(tmp_path, pool):
    out = tmp_path / "shards"
    out.mkdir()
    host, dead = sharding._HOST, 999_999_999

    def folder(name: str, *files: str) -> Path:
        path = out / name
        path.mkdir()
        for f in files:
            (path / f).write_text("x", encoding="utf-8")
        return path

    stale = folder(f".shard-0-of-2.hf-mig-tmp-{host}-{dead}-1", DATA_FILE, "state.json")
    kept = [
        folder(".tmp-shard-0-of-2-backup", "notes.txt"),  # looks like an older temporary name
        folder(f".shard-0-of-2.hf-mig-tmp-{host}-{dead}-2", "notes.txt"),  # foreign content
        folder(f".shard-0-of-2.hf-mig-tmp-elsewhere-{dead}-3", DATA_FILE),  # another host
        folder(f".shard-0-of-2.hf-mig-tmp-{host}-{os.getppid()}-4", DATA_FILE),  # still running
        folder(f".shard-1-of-2.hf-mig-tmp-{host}-{dead}-5", DATA_FILE),  # another shard
        folder(f".shard-0-of-20.hf-mig-tmp-{host}-{dead}-6", DATA_FILE),  # another split
        folder(f"shard-0-of-2.hf-mig-tmp-{host}-{dead}-7", DATA_FILE),  # not hidden: not ours
    ]
    lookalike = out / f".shard-0-of-2.hf-mig-tmp-{host}-{dead}-8"
    lookalike.write_text("a file, not a folder", encoding="utf-8")
    kept.append(lookalike)
    before = {p.name: tree(p) if p.is_dir() else p.read_bytes() for p in kept}
    assert score(pool, out, "--shard", "0/2") == 0
    assert not stale.exists()
    assert {p.name: tree(p) if p.is_dir() else p.read_bytes() for p in kept} == before
    assert [s.index for s in list_shards(out)] == [0]


# --------------------------------------------------------------------------------------
# damaged shards: merge verifies every file before writing anything


@pytest.fixture
def shards(tmp_path) -> Path:
    pool = write_pool(tmp_path / "pool.jsonl", rows=6, chars=3000)
    out = tmp_path / "shards"
    for i in range(2):
        assert score(pool, out, "--shard", f"{i}/2") == 0
    return out


def test_markers_record_every_file(shards):
    for info in list_shards(shards):
        files = sorted(p.name for p in info.path.iterdir() if p.name != SHARD_MARKER)
        assert sorted(info.files) == files and DATA_FILE in files
        for name, record in info.files.items():
            content = (info.path / name).read_bytes()
            assert record == {"bytes": len(content), "sha256": hashlib.sha256(content).hexdigest()}


def _flip_middle(path: Path) -> None:
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    assert chr(data[mid]) in string.ascii_lowercase  # the middle is row text, not metadata
    data[mid] ^= 0x01  # another lowercase letter: still valid UTF-8, Arrow reads it fine
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _delete(path: Path) -> None:
    path.unlink()


@pytest.mark.parametrize("damage", [_flip_middle, _truncate, _delete])
@pytest.mark.parametrize("name", ["merged.jsonl", "merged"])
def test_merge_refuses_a_damaged_shard_and_writes_nothing(tmp_path, shards, capsys, damage, name):
    target = shard_path(shards, 1, 2) / DATA_FILE
    damage(target)
    out = tmp_path / name
    capsys.readouterr()
    assert main(["merge", str(shards), str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{shard_path(shards, 1, 2)}: shard file {DATA_FILE}" in err
    assert "--overwrite" in err  # says how to redo it
    assert not out.exists() and temporaries(tmp_path) == []


def test_merge_refuses_a_changed_state_file(tmp_path, shards, capsys):
    state = shard_path(shards, 0, 2) / "state.json"
    state.write_text(state.read_text(encoding="utf-8") + " ", encoding="utf-8")
    assert main(["merge", str(shards), str(tmp_path / "m.jsonl")]) == 2
    assert "shard file state.json has" in capsys.readouterr().err
    assert not (tmp_path / "m.jsonl").exists()


def test_merge_refuses_a_marker_without_checksums(tmp_path, shards, capsys):
    marker = shard_path(shards, 0, 2) / SHARD_MARKER
    meta = json.loads(marker.read_text(encoding="utf-8"))
    del meta["files"]
    marker.write_text(json.dumps(meta), encoding="utf-8")
    assert main(["merge", str(shards), str(tmp_path / "m.jsonl")]) == 2
    assert "records no file checksums" in capsys.readouterr().err
    assert not (tmp_path / "m.jsonl").exists()


def test_merge_output_is_checked_first_and_overwritten_only_when_asked(tmp_path, shards, capsys):
    out = tmp_path / "m.jsonl"
    out.write_text("old\n", encoding="utf-8")
    assert main(["merge", str(shards), str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err and out.read_text() == "old\n"
    before = tree(shards)
    assert main(["merge", str(shards), str(shards), "--overwrite"]) == 2  # never the shards
    assert "holding other files" in capsys.readouterr().err and tree(shards) == before
    assert main(["merge", str(shards), str(out), "--overwrite"]) == 0
    assert len(load_pool(out)) == 6 and temporaries(tmp_path) == []
