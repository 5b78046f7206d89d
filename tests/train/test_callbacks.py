"""Each hf-mig callback alone with a plain ``transformers.Trainer`` and the offline tiny Llama."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from datasets import Dataset
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

import hf_mig
from hf_mig.train.callbacks import (
    GenerationPreviewCallback,
    LabelLossCallback,
    SelectionManifestCallback,
    format_preview_table,
    install_callbacks,
    judge_answers,
    update_model_card,
)
from hf_mig.train.tiny import build_tiny_llama

MAX_LEN = 128
PROMPTS = ["Name a prime number.", "Write one sentence about rain."]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny") / "llama")


@pytest.fixture(scope="module")
def selection(demo_annotated, demo_graph):
    pool = hf_mig.load_pool(demo_annotated)
    selector = hf_mig.get_selector("mig", 48, label_graph=str(demo_graph))
    subset = selector.select(pool)
    rows = subset.map(hf_mig.to_messages, batched=True, with_indices=True)
    return pool, subset, selector, rows


def _tokenize(rows: Dataset, tok) -> Dataset:
    def encode(example):
        enc = tok.apply_chat_template(
            example["messages"], tokenize=True, return_dict=True, return_assistant_tokens_mask=True
        )
        ids = list(enc["input_ids"])[:MAX_LEN]
        mask = list(enc["assistant_masks"])[:MAX_LEN]
        return {"input_ids": ids, "labels": [t if m else -100 for t, m in zip(ids, mask)]}

    return rows.map(encode, remove_columns=rows.column_names)


def _collate(pad_id: int):
    def collate(features):
        n = max(len(f["input_ids"]) for f in features)
        ids = torch.full((len(features), n), pad_id)
        labels = torch.full((len(features), n), -100)
        mask = torch.zeros((len(features), n), dtype=torch.long)
        for i, f in enumerate(features):
            k = len(f["input_ids"])
            ids[i, :k] = torch.tensor(f["input_ids"])
            labels[i, :k] = torch.tensor(f["labels"])
            mask[i, :k] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}

    return collate


def _trainer(tiny_dir, rows, out, callbacks, *, evaluate=False):
    tok = AutoTokenizer.from_pretrained(tiny_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    train_ds = _tokenize(rows, tok)
    args = TrainingArguments(
        output_dir=str(out),
        use_cpu=True,
        max_steps=4,
        per_device_train_batch_size=4,
        per_device_eval_batch_size=4,
        learning_rate=3e-3,
        logging_steps=1,
        save_strategy="steps",
        save_steps=2,
        eval_strategy="steps" if evaluate else "no",
        eval_steps=2,
        report_to=[],
        disable_tqdm=True,
        seed=0,
    )
    return Trainer(
        model=model,
        args=args,
        train_dataset=train_ds,
        eval_dataset=train_ds.select(range(8)) if evaluate else None,
        data_collator=_collate(tok.pad_token_id),
        processing_class=tok,
        callbacks=callbacks,
    )


# ------------------------------------------------------------------------------ manifest


def test_selection_manifest_callback_alone(tiny_dir, selection, demo_graph, tmp_path):
    pool, subset, selector, rows = selection
    callback = SelectionManifestCallback.from_selection(
        pool, subset, selector, pool_source="hf-mig:demo-annotated"
    )
    trainer = _trainer(tiny_dir, rows, tmp_path / "out", [callback])
    trainer.train()
    manifest = callback.manifest
    assert manifest["selection"]["method"] == "mig" and manifest["selection"]["k"] == 48
    assert manifest["pool"]["rows"] == len(pool) == 427
    assert manifest["pool"]["source"] == "hf-mig:demo-annotated"
    graph = hf_mig.LabelGraph.load(demo_graph).stats()
    assert manifest["label_graph"]["num_edges"] == graph["num_edges"]
    labels = {label for row in subset["labels"] for label in row}
    assert manifest["coverage"]["selected_labels"] == len(labels)
    assert manifest["hf_mig_version"] == hf_mig.__version__
    assert manifest["objective"] == pytest.approx(float(selector.result_.objective_trace[-1]))
    for folder in (
        tmp_path / "out",
        tmp_path / "out" / "checkpoint-2",
        tmp_path / "out" / "checkpoint-4",
    ):
        assert json.loads((folder / "selection_manifest.json").read_text()) == manifest
        card = (folder / "README.md").read_text()
        assert card.count("## Training data selection (hf-mig)") == 1
        assert "| k | 48 |" in card


def test_model_card_section_is_replaced_not_duplicated(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# My model\n\nTrained with care.\n")
    manifest = {"pool": {"source": "p.jsonl", "rows": 10}, "selection": {"method": "mig", "k": 3}}
    update_model_card(readme, manifest)
    update_model_card(readme, {**manifest, "selection": {"method": "random", "k": 4}})
    text = readme.read_text()
    assert text.startswith("# My model\n\nTrained with care.\n")
    assert text.count("hf-mig:selection-manifest:start") == 1
    assert "| method | `random` |" in text and "| k | 4 |" in text and "`mig`" not in text


# ------------------------------------------------------------------------------ label loss


class _Recorder(TrainerCallback):
    """Stands in for a reporter (TensorBoard, W&B): remembers the keys of every log it sees."""

    def __init__(self):
        self.keys: list[set[str]] = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.keys.append(set(logs or {}))


def test_label_loss_callback_alone(tiny_dir, selection, tmp_path):
    _, _, _, rows = selection
    callback = LabelLossCallback(rows, rows, num_groups=3, rows_per_group=4, max_length=MAX_LEN)
    recorder = _Recorder()
    trainer = _trainer(tiny_dir, rows, tmp_path / "out", [recorder], evaluate=True)
    install_callbacks(trainer, callback)  # before the "reporter"
    trainer.train()
    names = [g["name"] for g in callback.groups]
    assert len(names) == 3
    counts = {}
    for labels in rows["labels"]:
        for label in labels:
            counts[label] = counts.get(label, 0) + 1
    assert [g["rows"] for g in callback.groups] == sorted(counts.values(), reverse=True)[:3]
    history = trainer.state.log_history
    train_logs = [h for h in history if "loss" in h]
    assert len(train_logs) == 4
    assert all(f"label_loss/{n}" in h for h in train_logs for n in names)
    eval_logs = [h for h in history if "eval_loss" in h]
    assert eval_logs and any(k.startswith("eval_label_loss/") for k in eval_logs[0])
    seen = [keys for keys in recorder.keys if "loss" in keys]
    assert all({f"label_loss/{n}" for n in names} <= keys for keys in seen)

    # the logged value is the mean assistant-token loss of the final model on the probe rows
    tok = trainer.processing_class
    model = trainer.model.eval()
    group = 0
    members = callback._train["members"][group]
    total, count = 0.0, 0
    with torch.no_grad():
        for i in members:
            enc = tok.apply_chat_template(
                rows[i]["messages"],
                tokenize=True,
                return_dict=True,
                return_assistant_tokens_mask=True,
            )
            ids = list(enc["input_ids"])[:MAX_LEN]
            labels = [t if m else -100 for t, m in zip(ids, list(enc["assistant_masks"]))][:MAX_LEN]
            n = sum(1 for t in labels[1:] if t != -100)
            if n == 0:  # the prompt fills MAX_LEN: no answer token to score
                continue
            loss = model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels])).loss
            total += float(loss) * n
            count += n
    assert count > 0
    assert train_logs[-1][f"label_loss/{names[group]}"] == pytest.approx(total / count, rel=1e-5)
    lines = (tmp_path / "out" / "label_losses.jsonl").read_text().splitlines()
    assert {json.loads(x)["split"] for x in lines} == {"train", "eval"}


def test_label_groups_from_graph_clusters(demo_annotated, demo_graph):
    rows = hf_mig.load_pool(demo_annotated)  # all 427 rows: the largest groups join labels
    graph = hf_mig.LabelGraph.load(demo_graph)
    callback = LabelLossCallback(
        rows, group_by="clusters", label_graph=graph, num_groups=5, rows_per_group=2
    )
    row_labels = [set(x) for x in rows["labels"]]
    sizes = [g["rows"] for g in callback.groups]
    assert sizes == sorted(sizes, reverse=True) and len(sizes) == 5
    assert any(len(g["labels"]) > 1 for g in callback.groups)
    for group in callback.groups:
        members = set(group["labels"])
        # a cluster is closed under graph edges (restricted to labels of the training rows)
        present = {label for labels in row_labels for label in labels}
        for label in members:
            assert {n for n, _ in graph.neighbors(label)} & present <= members
        assert group["rows"] == sum(1 for labels in row_labels if labels & members)
        if len(members) > 1:
            assert group["name"].endswith(f"+{len(members) - 1}")
    with pytest.raises(ValueError, match="needs a label_graph"):
        LabelLossCallback(rows, group_by="clusters")


def _probe_loss(model, tok, rows, members) -> float:
    """Mean assistant-token loss of ``model`` on ``rows[members]``, as the callback defines it."""
    total, count = 0.0, 0
    with torch.no_grad():
        for i in members:
            enc = tok.apply_chat_template(
                rows[i]["messages"],
                tokenize=True,
                return_dict=True,
                return_assistant_tokens_mask=True,
            )
            ids = list(enc["input_ids"])[:MAX_LEN]
            labels = [t if m else -100 for t, m in zip(ids, list(enc["assistant_masks"]))][:MAX_LEN]
            n = sum(1 for t in labels[1:] if t != -100)
            if n == 0:
                continue
            loss = model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels])).loss
            total += float(loss) * n
            count += n
    assert count > 0
    return total / count


def test_loss_per_source(tiny_dir, selection, tmp_path):
    """group_by names a column: one group per value of the rows' ``source``."""
    _, _, _, rows = selection
    sources = list(rows["source"])
    counts = {value: sources.count(value) for value in set(sources)}
    assert len(counts) == 2  # the demo pool's two Self-Instruct files
    callback = LabelLossCallback(
        rows, rows, group_by="source", num_groups=5, rows_per_group=4, max_length=MAX_LEN
    )
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    assert [(g["name"], g["rows"]) for g in callback.groups] == [
        (f"source={value}", n) for value, n in ranked
    ]
    for group, members in zip(callback.groups, callback._train["members"]):
        assert len(members) == 4
        assert {sources[i] for i in members} == {group["labels"][0]}  # each probe row its own
    trainer = _trainer(tiny_dir, rows, tmp_path / "out", [], evaluate=True)
    install_callbacks(trainer, callback)
    trainer.train()
    history = trainer.state.log_history
    train_logs = [h for h in history if "loss" in h]
    names = [f"source={value}" for value, _ in ranked]
    assert all(f"label_loss/{name}" in h for h in train_logs for name in names)
    assert any(f"eval_label_loss/{names[0]}" in h for h in history if "eval_loss" in h)
    model = trainer.model.eval()
    for group, members in zip(callback.groups, callback._train["members"]):
        expected = _probe_loss(model, trainer.processing_class, rows, members)
        assert train_logs[-1][f"label_loss/{group['name']}"] == pytest.approx(expected, rel=1e-5)
    saved = json.loads((tmp_path / "out" / "label_groups.json").read_text())
    assert saved["group_by"] == "source" and [g["name"] for g in saved["groups"]] == names


def test_column_groups_of_lists_and_missing_values(selection):
    """A column of lists is grouped per element (``labels`` as a column = the top labels, by
    another name); ``None`` belongs to no group; a missing column is named."""
    _, _, _, rows = selection
    by_labels = LabelLossCallback(rows, num_groups=3, rows_per_group=2)
    by_column = LabelLossCallback(rows, group_by="labels", num_groups=3, rows_per_group=2)
    assert [g["rows"] for g in by_column.groups] == [g["rows"] for g in by_labels.groups]
    assert [g["name"] for g in by_column.groups] == [
        f"labels={g['name']}" for g in by_labels.groups
    ]
    values = [None, "a", "b", "a", None, "a"]
    table = Dataset.from_dict(
        {"messages": [rows[i]["messages"] for i in range(len(values))], "origin": values}
    )
    callback = LabelLossCallback(table, group_by="origin", num_groups=8, rows_per_group=8)
    assert [(g["name"], g["rows"]) for g in callback.groups] == [("origin=a", 3), ("origin=b", 1)]
    assert callback._train["members"] == [[1, 3, 5], [2]]
    with pytest.raises(ValueError, match=r"missing column\(s\) \['domain'\]"):
        LabelLossCallback(rows, group_by="domain")
    empty = Dataset.from_dict({"messages": table["messages"][:2], "origin": [None, None]})
    with pytest.raises(ValueError, match="no values in 'origin'"):
        LabelLossCallback(empty, group_by="origin")


# ------------------------------------------------------------------------------ generation


def test_generation_preview_callback_alone_with_judge(tiny_dir, selection, tmp_path):
    sys.path.insert(0, str(Path(__file__).parents[1]))
    from judge_server import JudgeServer, mt_rating

    from hf_mig.eval.judge import JudgeClient

    _, _, _, rows = selection
    with JudgeServer() as server:
        client = JudgeClient("judge", base_url=server.base_url, api_key_env=None)
        callback = GenerationPreviewCallback(PROMPTS, max_new_tokens=8, at="both", judge=client)
        trainer = _trainer(tiny_dir, rows, tmp_path / "out", [callback], evaluate=True)
        trainer.train()
    out = tmp_path / "out"
    records = [
        json.loads(x) for x in (out / "checkpoint-2" / "generations.jsonl").read_text().splitlines()
    ]
    assert [r["prompt"] for r in records] == PROMPTS
    assert all(r["step"] == 2 and r["event"] == "save" for r in records)
    assert all(r["judge"] == mt_rating(r["completion"]) for r in records)
    means = [
        h["preview/judge_mean"] for h in trainer.state.log_history if "preview/judge_mean" in h
    ]
    assert len(means) == 4  # evaluate + save at steps 2 and 4
    events = [json.loads(x)["event"] for x in (out / "generations.jsonl").read_text().splitlines()]
    assert events.count("save") == 4 and events.count("evaluate") == 4

    # the saved answers are the checkpoint's own greedy answers
    tok = AutoTokenizer.from_pretrained(out / "checkpoint-2")
    model = AutoModelForCausalLM.from_pretrained(out / "checkpoint-2")
    again = GenerationPreviewCallback(PROMPTS, max_new_tokens=8).generate(model, tok)
    assert [a["completion"] for a in again] == [r["completion"] for r in records]


def test_judge_answers_accepts_callables_and_scorers():
    records = [{"prompt": "a", "completion": "xyz"}, {"prompt": "b", "completion": ""}]
    assert judge_answers(lambda p, a: len(a), records) == [3, 0]
    scorer = SimpleNamespace(score=lambda p, a: p + a)
    assert judge_answers(scorer, records) == ["axyz", "b"]
    table = format_preview_table([{**r, "judge": 1} for r in records])
    assert table.splitlines()[0].split(" | ")[0].strip() == "prompt"
    assert len(table.splitlines()) == 4


# ------------------------------------------------------------------------------ main process only


class _Exploding(torch.nn.Module):
    """A model that must not be run: any forward or generate call fails the test."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.training = True

    def forward(self, *args, **kwargs):
        raise AssertionError("the model ran on a non-main process")

    def generate(self, *args, **kwargs):
        raise AssertionError("generate ran on a non-main process")


def test_callbacks_act_on_the_main_process_only(selection, tmp_path, monkeypatch):
    monkeypatch.delenv("ACCELERATE_USE_FSDP", raising=False)
    _, subset, selector, rows = selection
    args = SimpleNamespace(output_dir=str(tmp_path), should_save=False, fsdp=None)
    state = SimpleNamespace(
        is_world_process_zero=False, global_step=2, max_steps=4, log_history=[{"loss": 1.0}]
    )
    (tmp_path / "checkpoint-2").mkdir()
    tok = object()
    model = _Exploding()
    logs = {"loss": 1.0, "eval_loss": 1.0}
    manifest = SelectionManifestCallback({"selection": {"method": "mig", "k": 48}})
    label = LabelLossCallback(rows, rows, num_groups=2, rows_per_group=2)
    preview = GenerationPreviewCallback(PROMPTS, at="both")
    for callback in (manifest, label, preview):
        for event in ("on_train_begin", "on_save", "on_evaluate", "on_train_end"):
            getattr(callback, event)(args, state, None, model=model, processing_class=tok)
        callback.on_log(args, state, None, logs=logs, model=model, processing_class=tok)
    assert logs == {"loss": 1.0, "eval_loss": 1.0}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-2"]
    assert not any((tmp_path / "checkpoint-2").iterdir())
    assert np.isclose(state.log_history[0]["loss"], 1.0) and len(state.log_history) == 1
