"""The LC inputs fetched from the Hub: ``score`` against a real HTTP server on 127.0.0.1 acting as
the Hub's file endpoint (``HF_ENDPOINT``), in a subprocess with its own Hub cache."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from hf_mig.eval.length_control import (
    HUB_DIFFICULTY,
    HUB_GAMED,
    HUB_LC_REPO,
    N_INSTRUCTIONS,
    fit_length_controlled,
    load_gamed,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _difficulty(n: int = N_INSTRUCTIONS) -> np.ndarray:
    return np.random.default_rng(1).normal(size=n)


def _difficulty_csv(n: int = N_INSTRUCTIONS) -> bytes:
    lines = [",instruction_difficulty"] + [
        f"{i},{float(v)!r}" for i, v in enumerate(_difficulty(n))
    ]
    return ("\n".join(lines) + "\n").encode()


def _gamed_csv() -> bytes:
    rng = np.random.default_rng(2)
    lines = [",generator_2,preference,std_delta_len,instruction_difficulty"]
    for i in range(2 * N_INSTRUCTIONS):
        gen = "gamed_concise" if i % 2 else "gamed_verbose"
        pref = 1 + float(rng.uniform())
        lines.append(f"{i},{gen},{pref!r},{float(rng.normal())!r},{float(rng.normal())!r}")
    return ("\n".join(lines) + "\n").encode()


def _annotations(path: Path) -> list[dict]:
    # preferences that depend on the length difference and the difficulty, so that the
    # official GLM and the reduced one differ
    rng = np.random.default_rng(3)
    len_1 = rng.integers(50, 400, size=N_INSTRUCTIONS)
    len_2 = rng.integers(50, 800, size=N_INSTRUCTIONS)
    z = 2.0 * np.tanh((len_2 - len_1) / 250.0) - 0.8 + 1.2 * _difficulty()
    pref = 1 + 1 / (1 + np.exp(-z - rng.normal(scale=0.5, size=N_INSTRUCTIONS)))
    recs = [
        {
            "instruction": f"instruction {i}",
            "output_1": "b" * int(len_1[i]),
            "output_2": "m" * int(len_2[i]),
            "generator_1": "gpt4_1106_preview",
            "generator_2": "my-new-model",
            "preference": float(pref[i]),
        }
        for i in range(N_INSTRUCTIONS)
    ]
    path.write_text(json.dumps(recs))
    return recs


class FakeHub:
    """Serves ``files`` at ``/datasets/<repo>/resolve/main/<name>`` (HEAD and GET, with the
    headers ``hf_hub_download`` reads) and records every request as ``(method, path)``."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.requests: list[tuple[str, str]] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self, body: bool) -> None:
                hub.requests.append((self.command, self.path))
                prefix = f"/datasets/{HUB_LC_REPO}/resolve/main/"
                name = self.path.split("?")[0].removeprefix(prefix)
                data = hub.files.get(name) if self.path.startswith(prefix) else None
                if data is None:
                    self.send_response(404)
                    self.send_header("X-Error-Code", "EntryNotFound")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Content-Type", "text/csv")
                self.end_headers()
                if body:
                    self.wfile.write(data)

            def do_HEAD(self) -> None:  # noqa: N802 - http.server's name
                self._serve(body=False)

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                self._serve(body=True)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hub():
    server = FakeHub({HUB_DIFFICULTY: _difficulty_csv(), HUB_GAMED: _gamed_csv()})
    yield server
    server.close()


def _score(
    tmp_path: Path, ann: Path, endpoint: str, *, offline: bool = False, extra: tuple = ()
) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path / f"res{len(list(tmp_path.glob('res*.json')))}.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(
        HF_ENDPOINT=endpoint,
        HF_HUB_OFFLINE="1" if offline else "0",
        HF_HOME=str(tmp_path / "hf"),
        HF_HUB_CACHE=str(tmp_path / "hf" / "hub"),
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_ETAG_TIMEOUT="5",
    )
    cmd = [sys.executable, "-m", "hf_mig.eval.alpaca_eval", "score", "--annotations", str(ann)]
    proc = subprocess.run(
        [*cmd, "--out", str(out), *extra],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return proc, out


def test_downloaded_once_then_read_offline_from_the_cache(tmp_path, hub):
    ann = tmp_path / "annotations.json"
    recs = _annotations(ann)
    proc, out = _score(tmp_path, ann, hub.url)
    assert proc.returncode == 0, proc.stderr
    seen = {p for _, p in hub.requests}
    for name in (HUB_DIFFICULTY, HUB_GAMED):
        assert f"/datasets/{HUB_LC_REPO}/resolve/main/{name}" in seen
    assert any(m == "GET" for m, _ in hub.requests)
    res = json.loads(out.read_text())
    assert res["lc_method"] == "glm-refit"
    gamed = tmp_path / HUB_GAMED
    gamed.write_bytes(hub.files[HUB_GAMED])
    direct = fit_length_controlled(
        recs, instruction_difficulty=_difficulty(), gamed=load_gamed(gamed)
    )
    assert res["length_controlled_winrate"] == direct.length_controlled_winrate
    assert res["length_controlled_winrate"] != fit_length_controlled(recs).length_controlled_winrate

    # second run: offline, from the cache; the server is not asked
    hub.requests.clear()
    proc2, out2 = _score(tmp_path, ann, hub.url, offline=True)
    assert proc2.returncode == 0, proc2.stderr
    assert hub.requests == []
    res2 = json.loads(out2.read_text())
    assert res2["lc_method"] == "glm-refit"
    assert res2["length_controlled_winrate"] == res["length_controlled_winrate"]


def test_no_download_keeps_the_reduced_variant(tmp_path, hub):
    ann = tmp_path / "annotations.json"
    _annotations(ann)
    proc, out = _score(tmp_path, ann, hub.url, extra=("--no-download",))
    assert proc.returncode == 0, proc.stderr
    assert hub.requests == []
    assert json.loads(out.read_text())["lc_method"] == "reduced-glm"


def test_hub_down_and_empty_cache_gives_the_labelled_reduced_variant(tmp_path, hub):
    ann = tmp_path / "annotations.json"
    _annotations(ann)
    url = hub.url
    hub.close()
    proc, out = _score(tmp_path, ann, url)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(out.read_text())
    assert res["lc_method"] == "reduced-glm" and "REDUCED" in res["note"]
    assert f"{HUB_DIFFICULTY} of the Hub dataset {HUB_LC_REPO} not fetched" in res["note"]
    assert "--instruction-difficulty" in res["note"] and "--gamed" in res["note"]
    assert "not fetched" in proc.stderr


def test_offline_and_empty_cache_says_so(tmp_path, hub):
    ann = tmp_path / "annotations.json"
    _annotations(ann)
    proc, out = _score(tmp_path, ann, hub.url, offline=True)
    assert proc.returncode == 0, proc.stderr
    assert hub.requests == []
    res = json.loads(out.read_text())
    assert res["lc_method"] == "reduced-glm"
    assert "HF_HUB_OFFLINE=1" in res["note"]


@pytest.mark.parametrize(
    ("name", "body"),
    [
        (HUB_DIFFICULTY, _difficulty_csv(N_INSTRUCTIONS - 1)),
        (HUB_GAMED, b",preference,std_delta_len\n0,1.5,0.1\n"),
    ],
)
def test_malformed_served_file_is_a_clear_error(tmp_path, hub, name, body):
    hub.files[name] = body
    ann = tmp_path / "annotations.json"
    _annotations(ann)
    proc, _ = _score(tmp_path, ann, hub.url)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert "ValueError" in last and name in last and "not in alpaca_eval's format" in last
