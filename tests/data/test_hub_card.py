"""Selections as Hub datasets: the dataset card beside a saved selection, and the upload.

Uploads go through the real clients (``datasets``' ``Dataset.push_to_hub``, ``huggingface_hub``'s
``DatasetCard.push_to_hub``) to :class:`HubServer`, a Hub stand-in on 127.0.0.1 reached through
``HF_ENDPOINT`` in a subprocess (both libraries read the endpoint when imported). It implements
the part of the Hub API those uploads use, for dataset repositories only, with every file in
memory: repo info and creation, preupload, LFS batch (basic transfer; ``HF_HUB_DISABLE_XET=1``
keeps the client off the Xet protocol), NDJSON commits (a stale ``parentCommit`` gets 412),
tree / paths-info listings, downloads and ``/api/validate-yaml`` (the metadata checks that
matter here). ``mode="refuse_all"`` answers everything with HTTP 500 and a body echoing the
request's ``Authorization`` header, to check that no token is ever repeated.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pyarrow.parquet as pq
import pytest
import yaml
from datasets import Dataset
from huggingface_hub import DatasetCard

import hf_mig
from hf_mig.cli import main as cli
from hf_mig.data.hub import HubPushError, card_path

SIZE_CATEGORIES = (
    "n<1K",
    "1K<n<10K",
    "10K<n<100K",
    "100K<n<1M",
    "1M<n<10M",
    "10M<n<100M",
    "100M<n<1B",
    "1B<n<10B",
    "10B<n<100B",
    "100B<n<1T",
    "n>1T",
    "other",
)


class _Repo:
    def __init__(self, repo_id: str, private: bool):
        self.repo_id = repo_id
        self.private = private
        self.files: dict[str, bytes] = {}
        self.commits: list[str] = [hashlib.sha1(repo_id.encode()).hexdigest()]
        self.snapshots: dict[str, dict[str, bytes]] = {self.commits[0]: {}}

    @property
    def head(self) -> str:
        return self.commits[-1]

    def at(self, rev: str) -> dict[str, bytes] | None:
        if rev in ("main", self.head):
            return self.files
        return self.snapshots.get(rev)


class HubServer:
    """``with HubServer() as hub: ...`` -> ``hub.endpoint`` is ``http://127.0.0.1:PORT``."""

    def __init__(self, mode: str = "ok", user: str = "tester"):
        self.mode = mode
        self.user = user
        self.repos: dict[str, _Repo] = {}
        self.requests: list[tuple[str, str]] = []
        self.tokens: list[str] = []
        self.unhandled: list[tuple[str, str]] = []
        self.commit_messages: list[str] = []
        self.validated: list[str] = []
        self.blobs: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # ---------------------------------------------------------------- lifecycle
    def __enter__(self) -> HubServer:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                hub._handle(self, "GET")

            def do_HEAD(self) -> None:
                hub._handle(self, "HEAD")

            def do_POST(self) -> None:
                hub._handle(self, "POST")

            def do_PUT(self) -> None:
                hub._handle(self, "PUT")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    @property
    def endpoint(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # ---------------------------------------------------------------- replies
    @staticmethod
    def _send(h, status: int, body: Any = None, headers: dict | None = None, raw=None) -> None:
        data = raw if raw is not None else json.dumps(body if body is not None else {}).encode()
        h.send_response(status)
        h.send_header(
            "Content-Type", "application/json" if raw is None else "application/octet-stream"
        )
        h.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            h.send_header(key, value)
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(data)

    def _not_found(self, h, code: str = "RepoNotFound", message: str = "Repository not found"):
        self._send(h, 404, {"error": message}, {"X-Error-Code": code, "X-Error-Message": message})

    def _repo_info(self, repo: _Repo, rev: str) -> dict:
        files = repo.at(rev) or {}
        sha = repo.head if rev in ("main", repo.head) else rev
        return {
            "id": repo.repo_id,
            "_id": repo.repo_id,
            "sha": sha,
            "private": repo.private,
            "siblings": [{"rfilename": path} for path in sorted(files)],
            "author": repo.repo_id.split("/")[0],
            "disabled": False,
            "gated": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "lastModified": "2025-01-01T00:00:00.000Z",
            "createdAt": "2025-01-01T00:00:00.000Z",
        }

    def _tree(self, repo: _Repo, rev: str, prefix: str, recursive: bool) -> list[dict]:
        files = repo.at(rev)
        if files is None:
            return []
        prefix = prefix.strip("/")
        out, dirs = [], set()
        for path, data in sorted(files.items()):
            if prefix and not path.startswith(prefix + "/"):
                continue
            rest = path[len(prefix) + 1 :] if prefix else path
            if "/" in rest and not recursive:
                dirs.add((prefix + "/" if prefix else "") + rest.split("/")[0])
                continue
            oid = hashlib.sha1(data).hexdigest()
            out.append({"type": "file", "path": path, "size": len(data), "oid": oid})
        out += [{"type": "directory", "path": d, "oid": "0" * 40, "size": 0} for d in sorted(dirs)]
        return out

    def _handle(self, h, method: str) -> None:
        url = urlparse(h.path)
        path = unquote(url.path)
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        auth = h.headers.get("Authorization") or ""
        with self._lock:
            self.requests.append((method, path))
            if auth.startswith("Bearer "):
                self.tokens.append(auth[len("Bearer ") :])
        if self.mode == "refuse_all":
            self._send(h, 500, {"error": f"internal error (request had {auth!r})"})
            return
        with self._lock:
            self._route(h, method, path, url.query, body)

    def _route(self, h, method: str, path: str, query: str, body: bytes) -> None:
        if method == "GET" and path == "/api/whoami-v2":
            self._send(h, 200, {"name": self.user, "type": "user", "orgs": []})
            return
        if method == "POST" and path == "/api/repos/create":
            req = json.loads(body or b"{}")
            name = req["name"]
            repo_id = f"{req.get('organization') or self.user}/{name}" if "/" not in name else name
            if repo_id in self.repos:
                self._send(h, 409, {"error": "You already created this dataset repo"})
                return
            private = bool(req.get("private")) or req.get("visibility") == "private"
            self.repos[repo_id] = _Repo(repo_id, private)
            self._send(h, 200, {"url": f"{self.endpoint}/datasets/{repo_id}", "name": repo_id})
            return
        if method == "POST" and path == "/api/validate-yaml":
            problem = self._validate_card(json.loads(body)["content"])
            self.validated.append(json.loads(body)["content"])
            if problem:
                self._send(h, 400, raw=problem.encode())
            else:
                self._send(h, 200, {})
            return
        m = re.fullmatch(r"/api/datasets/([^/]+/[^/]+)(?:/revision/([^/]+))?", path)
        if m and method == "GET":
            repo = self.repos.get(m.group(1))
            if repo is None:
                self._not_found(h)
                return
            rev = m.group(2) or "main"
            if repo.at(rev) is None:
                self._not_found(h, "RevisionNotFound", "Revision not found")
                return
            self._send(h, 200, self._repo_info(repo, rev))
            return
        m = re.fullmatch(
            r"/api/datasets/([^/]+/[^/]+)/(preupload|commit|tree|paths-info)/([^/]+)(/.*)?", path
        )
        if m:
            repo = self.repos.get(m.group(1))
            if repo is None:
                self._not_found(h)
                return
            kind, rev, rest = m.group(2), m.group(3), (m.group(4) or "")
            if kind == "preupload" and method == "POST":
                files = json.loads(body)["files"]
                self._send(
                    h,
                    200,
                    {
                        "files": [
                            {
                                "path": f["path"],
                                "uploadMode": "lfs"
                                if f["path"].endswith(".parquet")
                                else "regular",
                                "shouldIgnore": False,
                            }
                            for f in files
                        ],
                        "commitOid": repo.head,
                    },
                )
                return
            if kind == "commit" and method == "POST":
                self._commit(h, repo, body)
                return
            if kind == "tree" and method == "GET":
                recursive = "recursive=true" in query.lower() or "recursive=1" in query
                entries = self._tree(repo, rev, rest, recursive)
                if rest.strip("/") and not entries:
                    self._not_found(h, "EntryNotFound", f"{rest} does not exist on {rev}")
                    return
                self._send(h, 200, entries)
                return
            if kind == "paths-info" and method == "POST":
                text = body.decode()
                try:
                    paths = json.loads(text)["paths"]
                except (ValueError, KeyError):
                    from urllib.parse import parse_qs

                    paths = parse_qs(text).get("paths", [])
                files = repo.at(rev) or {}
                out = []
                for p in paths:
                    if p in files:
                        oid = hashlib.sha1(files[p]).hexdigest()
                        out.append({"type": "file", "path": p, "size": len(files[p]), "oid": oid})
                    elif any(f.startswith(p.rstrip("/") + "/") for f in files):
                        out.append({"type": "directory", "path": p, "oid": "0" * 40})
                self._send(h, 200, out)
                return
        m = re.fullmatch(r"/datasets/([^/]+/[^/]+)\.git/info/lfs/objects/batch", path)
        if m and method == "POST":
            objects = json.loads(body)["objects"]
            self._send(
                h,
                200,
                {
                    "transfer": "basic",
                    "objects": [
                        {
                            "oid": o["oid"],
                            "size": o["size"],
                            "actions": {
                                "upload": {"href": f"{self.endpoint}/lfs-blobs/{o['oid']}"}
                            },
                        }
                        for o in objects
                    ],
                },
            )
            return
        m = re.fullmatch(r"/lfs-blobs/([0-9a-f]{64})", path)
        if m and method == "PUT":
            if hashlib.sha256(body).hexdigest() != m.group(1):
                self._send(h, 400, {"error": "sha256 does not match"})
                return
            self.blobs[m.group(1)] = body
            self._send(h, 200, {})
            return
        m = re.fullmatch(r"/datasets/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
        if m and method in ("GET", "HEAD"):
            repo = self.repos.get(m.group(1))
            if repo is None:
                self._not_found(h)
                return
            files = repo.at(m.group(2))
            if files is None or m.group(3) not in files:
                self._not_found(h, "EntryNotFound", "Entry not found")
                return
            data = files[m.group(3)]
            commit = repo.head if m.group(2) == "main" else m.group(2)
            etag = '"' + hashlib.sha1(data).hexdigest() + '"'
            self._send(
                h,
                200,
                raw=data,
                headers={"ETag": etag, "X-Repo-Commit": commit, "Accept-Ranges": "bytes"},
            )
            return
        self.unhandled.append((method, path))
        self._not_found(h, "EntryNotFound", f"not implemented by the test hub: {method} {path}")

    @staticmethod
    def _validate_card(content: str) -> str | None:
        """The dataset-card metadata checks of the Hub that matter here; ``None`` when valid."""

        m = re.match(r"\A---\r?\n(.*?)\r?\n---\r?\n", content, re.S)
        if not m:
            return "no YAML metadata block"
        data = yaml.safe_load(m.group(1))
        if not isinstance(data, dict):
            return "metadata is not a mapping"
        for key in ("size_categories", "tags", "source_datasets", "task_categories"):
            value = data.get(key)
            if value is not None and not (
                isinstance(value, list) and all(isinstance(v, str) for v in value)
            ):
                return f'"{key}" must be a list of strings'
        for value in data.get("size_categories") or []:
            if value not in SIZE_CATEGORIES:
                return f'"size_categories": unknown value {value!r}'
        if "pretty_name" in data and not isinstance(data["pretty_name"], str):
            return '"pretty_name" must be a string'
        return None

    def _commit(self, h, repo: _Repo, body: bytes) -> None:
        lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        header = next(line["value"] for line in lines if line["key"] == "header")
        parent = header.get("parentCommit")
        if parent and parent != repo.head:
            self._send(h, 412, {"error": "parent commit is not the head"})
            return
        files = dict(repo.files)
        for line in lines:
            key, value = line["key"], line["value"]
            if key == "file":
                files[value["path"]] = base64.b64decode(value["content"])
            elif key == "deletedFile":
                files.pop(value["path"], None)
            elif key == "deletedFolder":
                for p in [p for p in files if p.startswith(value["path"].rstrip("/") + "/")]:
                    files.pop(p)
            elif key == "lfsFile":
                if value["oid"] not in self.blobs:
                    self._send(h, 400, {"error": f"LFS object {value['oid']} was not uploaded"})
                    return
                files[value["path"]] = self.blobs[value["oid"]]
        sha = hashlib.sha1(f"{repo.head}{len(repo.commits)}".encode()).hexdigest()
        repo.files = files
        repo.commits.append(sha)
        repo.snapshots[sha] = dict(files)
        self.commit_messages.append(header.get("summary", ""))
        self._send(
            h,
            200,
            {
                "commitUrl": f"{self.endpoint}/datasets/{repo.repo_id}/commit/{sha}",
                "commitOid": sha,
                "pullRequestUrl": None,
            },
        )


# --------------------------------------------------------------------------------------
# helpers

SECRET = "hf_TestSecretToken0123456789"


def _select_args(pool: Path, graph: Path, out: Path, *extra: str) -> list[str]:
    return ["select", str(pool), "--graph", str(graph), "-k", "15", "--out", str(out), *extra]


def _run_cli(args: list[str], endpoint: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    """``python -m hf_mig ARGS`` with the Hub at ``endpoint`` (online, no Xet, own HF_HOME)."""
    full = dict(os.environ)
    for key in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE"):
        full.pop(key, None)
    full.update(
        HF_ENDPOINT=endpoint,
        HF_HUB_OFFLINE="0",
        HF_HUB_DISABLE_XET="1",
        HF_HOME=str(cwd / "hf_home"),
        HF_HUB_DISABLE_TELEMETRY="1",
        PYTHONPATH=str(Path(hf_mig.__file__).resolve().parents[1]),
        **env,
    )
    return subprocess.run(
        [sys.executable, "-m", "hf_mig", *args],
        cwd=cwd,
        env=full,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("hf-mig select: error:")]


def _card_facts(text: str) -> dict:
    block = text.split("## Selection facts (JSON)", 1)[1]
    return json.loads(block.split("```json", 1)[1].split("```", 1)[0])


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --------------------------------------------------------------------------------------
# the local card


def test_card_beside_the_output_states_pool_options_coverage_and_command(
    demo_annotated, demo_graph, tmp_path, capsys
):
    out = tmp_path / "subset.jsonl"
    summary_path = tmp_path / "summary.json"
    args = _select_args(
        demo_annotated, demo_graph, out, "--norm", "--summary-json", str(summary_path)
    )
    assert cli.main(args) == 0
    card_file = tmp_path / "subset.jsonl.README.md"
    assert card_path(out) == card_file and card_file.is_file()
    assert f"wrote the dataset card {card_file}" in capsys.readouterr().out

    card = DatasetCard.load(card_file)
    meta = card.data.to_dict()
    assert meta["tags"] == ["hf-mig", "data-selection", "mig"]
    assert meta["size_categories"] == ["n<1K"]
    assert "source_datasets" not in meta  # a local file, not a Hub dataset
    assert HubServer._validate_card(card_file.read_text(encoding="utf-8")) is None

    facts = _card_facts(card.text)
    summary = json.loads(summary_path.read_text())
    pool = facts["pool"]
    assert pool["sha256"] == hashlib.sha256(demo_annotated.read_bytes()).hexdigest()
    assert pool["sha256"] in card.text and pool["fingerprint"] in card.text
    assert pool["rows"] == 427 == summary["pool_rows"]
    assert facts["hf_mig_version"] == hf_mig.__version__
    options = facts["selection"]["options"]
    assert options["norm"] is True and options["k"] == 15 and options["method"] == "mig"
    for name in ("phi", "phi_a", "phi_b", "prop_weight", "gain", "min_coverage"):
        value = options[name]
        shown = value if isinstance(value, str) else json.dumps(value)
        assert f"| {name} | `{shown}` |" in card.text
    for key in ("label_coverage", "pool_unlabelled_rows", "selected_unlabelled_rows"):
        assert facts["summary"][key] == summary[key]
    assert (
        f"| rows without a label | {summary['selected_unlabelled_rows']} | "
        f"{summary['pool_unlabelled_rows']} |" in card.text
    )
    assert f"({100 * summary['label_coverage']:.1f}% coverage)" in card.text
    assert facts["budget"] is None and "## Budget and quotas" in card.text
    assert facts["reproduce"]["command"] == shlex.join(["hf-mig", *args])
    assert f"```bash\n{shlex.join(['hf-mig', *args])}\n```" in card.text
    assert facts["reproduce"]["python"] == (
        f"hf_mig.select(pool, 15, label_graph={str(demo_graph)!r}, norm=True)"
    )


def test_card_states_the_budget_and_quotas_and_what_the_picks_used(
    demo_annotated, demo_graph, tmp_path
):
    rows = [json.loads(line) for line in demo_annotated.read_text().splitlines()]
    for i, row in enumerate(rows):
        row["num_tokens"] = 20 + (i * 37) % 400
        row["source"] = ("self-instruct", "user-oriented")[i % 2]
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "subset.jsonl"
    extra = ("--budget", "3000", "--quota-column", "source", "--quota", "user-oriented=4:6")
    assert cli.main(_select_args(pool, demo_graph, out, *extra)) == 0

    text = card_path(out).read_text(encoding="utf-8")
    budget = _card_facts(text)["budget"]
    picked = [json.loads(line) for line in out.read_text().splitlines()]
    used = sum(r["num_tokens"] for r in picked)
    assert budget["budget"] == 3000 and budget["cost_column"] == "num_tokens"
    assert budget["cost_used"] == used <= 3000
    assert budget["quotas"] == {"user-oriented": [4, 6]}
    per_group = {g: sum(r["source"] == g for r in picked) for g in {r["source"] for r in picked}}
    assert budget["picks_per_group"] == per_group and 4 <= per_group["user-oriented"] <= 6
    assert f"| cost_used | `{used}.0` |" in text or f"| cost_used | `{float(used)}` |" in text
    assert "no per-label quotas" not in text


def test_a_budget_alone_card_reproduces_without_k(demo_annotated, demo_graph, tmp_path):
    rows = [json.loads(line) for line in demo_annotated.read_text().splitlines()]
    for i, row in enumerate(rows):
        row["num_tokens"] = 20 + (i * 37) % 400
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "subset.jsonl"
    args = ["select", str(pool), "--graph", str(demo_graph), "--out", str(out)]
    assert cli.main([*args, "--budget", "2000"]) == 0
    facts = _card_facts(card_path(out).read_text(encoding="utf-8"))
    assert facts["selection"]["k"] is None
    assert "-k" not in shlex.split(facts["reproduce"]["command"])
    assert facts["reproduce"]["python"].startswith("hf_mig.select(pool, label_graph=")
    assert "budget=2000" in facts["reproduce"]["python"]
    picked = [json.loads(line) for line in out.read_text().splitlines()]
    assert sum(r["num_tokens"] for r in picked) <= 2000


def test_the_card_command_reproduces_the_selection(demo_annotated, demo_graph, tmp_path):
    first = tmp_path / "a"
    first.mkdir()
    args = _select_args(demo_annotated, demo_graph, Path("subset.jsonl"), "--method", "random")
    args += ["--seed", "7"]
    cwd = os.getcwd()
    try:
        os.chdir(first)
        assert cli.main(args) == 0
        command = _card_facts((first / "subset.jsonl.README.md").read_text())["reproduce"]
        again = tmp_path / "b"
        again.mkdir()
        os.chdir(again)
        words = shlex.split(command["command"])
        assert words[0] == "hf-mig"
        assert cli.main(words[1:]) == 0
    finally:
        os.chdir(cwd)
    assert (again / "subset.jsonl").read_bytes() == (first / "subset.jsonl").read_bytes()
    assert command["python"] == "hf_mig.select(pool, 15, method='random', seed=7)"
    pool = hf_mig.load_pool(demo_annotated)
    rows = [json.loads(line) for line in (first / "subset.jsonl").read_text().splitlines()]
    again_rows = eval(command["python"], {"hf_mig": hf_mig, "pool": pool})
    assert again_rows["id"] == [r["id"] for r in rows]


def test_folder_output_gets_a_sibling_card_and_stays_replaceable(
    demo_annotated, demo_graph, tmp_path
):
    out = tmp_path / "subset"
    assert cli.main(_select_args(demo_annotated, demo_graph, out)) == 0
    assert (tmp_path / "subset.README.md").is_file()
    assert not (out / "README.md").exists()  # the folder holds only the saved dataset
    assert cli.main(_select_args(demo_annotated, demo_graph, out, "--overwrite")) == 0


def test_an_existing_card_is_refused_before_the_work(demo_annotated, demo_graph, tmp_path, capsys):
    out = tmp_path / "subset.jsonl"
    mine = tmp_path / "subset.jsonl.README.md"
    mine.write_text("my notes\n", encoding="utf-8")
    assert cli.main(_select_args(demo_annotated, demo_graph, out)) == 2
    err = capsys.readouterr().err
    assert str(mine) in err and "--overwrite" in err
    assert mine.read_text(encoding="utf-8") == "my notes\n"
    assert not out.exists()
    assert cli.main(_select_args(demo_annotated, demo_graph, out, "--no-card")) == 0
    assert mine.read_text(encoding="utf-8") == "my notes\n" and out.is_file()


def test_bad_hub_arguments_are_refused_before_the_work(
    demo_annotated, demo_graph, tmp_path, capsys
):
    out = tmp_path / "subset.jsonl"
    cases = [
        (["--push-to-hub", "me//sel"], "'me//sel' is not a Hub dataset id"),
        (["--push-to-hub", "me/sel", "--token-env", "HF_MIG_TEST_UNSET"], "HF_MIG_TEST_UNSET"),
        (["--private"], "--push-to-hub, which is not given"),
    ]
    for extra, message in cases:
        assert cli.main(_select_args(demo_annotated, demo_graph, out, *extra)) == 2
        assert message in capsys.readouterr().err
        assert not out.exists() and not card_path(out).exists()


# --------------------------------------------------------------------------------------
# uploads that fail: one line, non-zero exit, local outputs kept


def test_offline_push_fails_after_writing_everything_locally(
    demo_annotated, demo_graph, tmp_path, capsys, monkeypatch
):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    out = tmp_path / "subset.jsonl"
    indices = tmp_path / "indices.json"
    args = _select_args(demo_annotated, demo_graph, out, "--indices-out", str(indices))
    assert cli.main([*args, "--push-to-hub", "me/sel"]) == 3
    lines = _error_lines(capsys.readouterr().err)
    assert len(lines) == 1
    assert "'me/sel'" in lines[0] and "offline" in lines[0] and "HF_HUB_OFFLINE" in lines[0]
    assert out.is_file() and indices.is_file() and card_path(out).is_file()
    assert len(out.read_text().splitlines()) == 15


@pytest.mark.parametrize("failure", ["http_500", "connection_refused"])
def test_unreachable_hub_fails_in_one_line_without_the_token(
    failure, demo_annotated, demo_graph, tmp_path
):
    out = tmp_path / "subset.jsonl"
    args = _select_args(demo_annotated, demo_graph, out, "--push-to-hub", "me/sel")
    args += ["--token-env", "MY_HUB_TOKEN"]
    if failure == "http_500":
        with HubServer(mode="refuse_all") as hub:
            run = _run_cli(args, hub.endpoint, tmp_path, MY_HUB_TOKEN=SECRET)
        assert SECRET in hub.tokens  # the client sent it, and the server echoed it back
        cause = "500"
    else:
        run = _run_cli(args, f"http://127.0.0.1:{_closed_port()}", tmp_path, MY_HUB_TOKEN=SECRET)
        cause = "Connect"
    assert run.returncode == 3, run.stderr[-2000:]
    lines = _error_lines(run.stderr)
    assert len(lines) == 1, run.stderr[-2000:]
    assert "push to the Hub dataset 'me/sel' failed" in lines[0] and cause in lines[0]
    assert f"the local outputs are kept: {out}, {card_path(out)}" in lines[0]
    assert SECRET not in run.stdout + run.stderr
    assert SECRET not in card_path(out).read_text(encoding="utf-8")
    assert len(out.read_text().splitlines()) == 15


def test_a_token_that_reaches_the_command_line_is_masked_in_the_card(
    demo_annotated, demo_graph, tmp_path, monkeypatch
):
    # --split is ignored for a file pool, so any text can ride along in the command line
    monkeypatch.setenv("HF_TOKEN", SECRET)
    out = tmp_path / "subset.jsonl"
    assert cli.main(_select_args(demo_annotated, demo_graph, out, "--split", SECRET)) == 0
    text = card_path(out).read_text(encoding="utf-8")
    assert SECRET not in text and "--split ***" in text


# --------------------------------------------------------------------------------------
# uploads that succeed (against the test Hub)


def test_push_uploads_the_rows_and_the_card(demo_annotated, demo_graph, tmp_path):
    def push_args(out: Path, *extra: str) -> list[str]:
        hub_args = ["--push-to-hub", "tester/mig-15", "--private", "--token-env", "MY_HUB_TOKEN"]
        return _select_args(demo_annotated, demo_graph, out, *hub_args, *extra)

    out = tmp_path / "subset.jsonl"
    token = {"MY_HUB_TOKEN": SECRET}
    with HubServer() as hub:
        run = _run_cli(push_args(out), hub.endpoint, tmp_path, **token)
        assert run.returncode == 0, run.stderr[-3000:]
        assert f"pushed to {hub.endpoint}/datasets/tester/mig-15" in run.stdout
        again = _run_cli(push_args(tmp_path / "second.jsonl"), hub.endpoint, tmp_path, **token)
        third = push_args(tmp_path / "third.jsonl", "--overwrite")
        overwritten = _run_cli(third, hub.endpoint, tmp_path, **token)
    assert not hub.unhandled or all(p == "/api/agent-harnesses" for _, p in hub.unhandled)
    assert set(hub.tokens) == {SECRET}
    assert SECRET not in run.stdout + run.stderr
    repo = hub.repos["tester/mig-15"]
    assert repo.private
    (shard,) = [p for p in repo.files if p.startswith("data/train-")]
    uploaded = pq.read_table(io.BytesIO(repo.files[shard])).to_pylist()
    local = [json.loads(line) for line in out.read_text().splitlines()]
    assert uploaded == local

    readme = repo.files["README.md"].decode()
    assert HubServer._validate_card(readme) is None
    remote = DatasetCard(readme)
    meta = remote.data.to_dict()
    assert meta["tags"] == ["hf-mig", "data-selection", "mig"]
    assert meta["configs"][0]["data_files"][0]["path"] == "data/train-*"  # kept from datasets
    assert meta["dataset_info"]["splits"][0]["num_examples"] == 15
    # the repository holds the last (--overwrite) push: its card is that run's local card
    local_card = DatasetCard.load(card_path(tmp_path / "third.jsonl"))
    assert remote.text == local_card.text
    assert SECRET not in readme

    # a second push to the same repository is refused unless --overwrite (its outputs kept)
    assert again.returncode == 3
    (line,) = _error_lines(again.stderr)
    assert "'tester/mig-15' failed: the dataset repository exists; pass --overwrite" in line
    assert (tmp_path / "second.jsonl").is_file()
    assert overwritten.returncode == 0, overwritten.stderr[-3000:]
    assert hub.commit_messages[-1] == "hf-mig: selection card"


def test_python_push_to_hub(tmp_path, demo_annotated):
    """``hf_mig.select(..., push_to_hub=...)`` in a fresh interpreter pointed at the test Hub;
    in this one (offline) a failed push keeps the subset on the error."""
    script = tmp_path / "push.py"
    script.write_text(
        "import json, sys\n"
        "import hf_mig\n"
        f"pool = hf_mig.load_pool({str(demo_annotated)!r})\n"
        "subset = hf_mig.select(pool, 9, method='random', seed=3, push_to_hub='tester/rand9')\n"
        'print(json.dumps(list(subset["id"])))\n',
        encoding="utf-8",
    )
    with HubServer() as hub:
        full = dict(os.environ, HF_ENDPOINT=hub.endpoint, HF_HUB_OFFLINE="0")
        full.update(HF_HUB_DISABLE_XET="1", HF_HOME=str(tmp_path / "hf_home"), HF_TOKEN=SECRET)
        full["PYTHONPATH"] = str(Path(hf_mig.__file__).resolve().parents[1])
        run = subprocess.run(
            [sys.executable, str(script)], env=full, capture_output=True, text=True, timeout=300
        )
    assert run.returncode == 0, run.stderr[-3000:]
    ids = json.loads(run.stdout.strip().splitlines()[-1])
    repo = hub.repos["tester/rand9"]
    (shard,) = [p for p in repo.files if p.startswith("data/train-")]
    assert pq.read_table(io.BytesIO(repo.files[shard])).column("id").to_pylist() == ids
    facts = _card_facts(repo.files["README.md"].decode())
    assert facts["reproduce"] == {
        "command": None,
        "python": "hf_mig.select(pool, 9, method='random', seed=3)",
    }
    assert facts["pool"]["source"] is None and facts["pool"]["rows"] == 427
    assert facts["selection"]["options"] == {"k": 9, "method": "random", "seed": 3}

    pool = hf_mig.load_pool(demo_annotated)
    with pytest.raises(HubPushError, match="'tester/rand9' failed: offline") as info:
        hf_mig.select(pool, 9, method="random", seed=3, push_to_hub="tester/rand9")
    assert list(info.value.subset["id"]) == ids
    with pytest.raises(ValueError, match="not a Hub dataset id"):
        hf_mig.select(pool, 9, method="random", push_to_hub="bad..name")


def test_card_of_a_pool_from_the_hub_names_it_as_source(tmp_path):
    from hf_mig.data.hub import pool_identity, selection_card, selection_facts

    pool = Dataset.from_dict({"labels": [["a"], ["b"], ["a", "b"]], "score": [1.0, 2.0, 3.0]})
    selector = hf_mig.get_selector("random", 2, seed=1)
    indices = selector.select_indices(pool)
    info = pool_identity(pool, "someone/pool")
    assert info["kind"] == "hub" and "sha256" not in info
    card = selection_card(selection_facts(pool, indices, selector, pool_info=info))
    assert card.data.to_dict()["source_datasets"] == ["someone/pool"]
    local = tmp_path / "pool.jsonl"
    local.write_text('{"x": 1}\n', encoding="utf-8")
    assert pool_identity(pool, local)["sha256"] == hashlib.sha256(local.read_bytes()).hexdigest()
    assert pool_identity(pool, local)["sha256"] == hashlib.sha256(b'{"x": 1}\n').hexdigest()
