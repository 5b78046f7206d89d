"""The MIG paper's experimental settings as data: base models, pools, methods, released subsets.

One table feeds both the training recipes (``recipes/generate.py`` writes ``recipes/*/*.yaml``
from it) and the reproduction plans (:mod:`hf_mig.reproduce.experiments`). Settings come from the
paper as summarised in the project's SPEC (section 4). ``mean_tokens`` (mean conversation length
of a pool) is an assumption used only for time estimates.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["METHODS", "MODELS", "POOLS", "RELEASED", "Model", "Pool", "model_by_slug"]


@dataclass(frozen=True)
class Model:
    """A base model: ``slug`` names files and runs, ``hub_id`` is what is trained."""

    slug: str
    hub_id: str
    params: float
    template: str
    eos_token: str | None
    why_template: str


MODELS = {
    "llama": Model(
        "llama-3.1-8b",
        "meta-llama/Llama-3.1-8B",
        8.03e9,
        "llama3",
        "<|eot_id|>",
        "llama3, as in the paper",
    ),
    "qwen": Model(
        "qwen2.5-7b",
        "Qwen/Qwen2.5-7B",
        7.62e9,
        "qwen2.5",
        "<|im_end|>",
        "ChatML (Qwen2.5-Instruct's format; its tokens are already in the base vocabulary)",
    ),
    "mistral": Model(
        "mistral-7b-v0.3",
        "mistralai/Mistral-7B-v0.3",
        7.25e9,
        "mistral-v0.3",
        None,
        "Mistral v3 [INST] format (Mistral-7B-Instruct-v0.3's; [INST] is a v3 control token)",
    ),
}


def model_by_slug(slug: str) -> Model:
    """The :class:`Model` whose ``slug`` (or key) is ``slug``; ``ValueError`` listing the known."""
    for key, model in MODELS.items():
        if slug in (key, model.slug):
            return model
    known = ", ".join(m.slug for m in MODELS.values())
    raise ValueError(f"unknown base model {slug!r}; known: {known}")


@dataclass(frozen=True)
class Pool:
    """An instruction pool of the paper and its training settings.

    ``path``: the annotated pool as the recipes expect it; ``source``: where the raw pool comes
    from (a Hub dataset id, or None when no public id is recorded here).
    """

    slug: str
    title: str
    path: str
    rows: str
    vocabulary: str
    graph: str
    k: int
    lr: float
    warmup: float
    max_length: int
    per_device: int
    accumulation: int
    mean_tokens: int
    tags: int
    n_rows: int = 0
    source: str | None = None


POOLS = {
    "tulu3": Pool(
        "tulu3",
        "Tulu 3 SFT mixture",
        "pools/tulu3-939k-annotated.jsonl",
        "939K",
        "hf-mig:instag",
        "graphs/tulu3-instag4531-e5mistral-t0.9.npz",
        50_000,
        5.0e-6,
        0.03,
        4096,
        2,
        8,
        1000,
        4531,
        939_000,
        "allenai/tulu-3-sft-mixture",
    ),
    "openhermes": Pool(
        "openhermes2.5",
        "OpenHermes 2.5",
        "pools/openhermes2.5-1m-annotated.jsonl",
        "1M",
        "pools/openhermes2.5-tags.json",
        "graphs/openhermes2.5-tags5166-e5mistral-t0.9.npz",
        50_000,
        7.0e-6,
        0.01,
        4096,
        2,
        8,
        450,
        5166,
        1_000_000,
        "teknium/OpenHermes-2.5",
    ),
    "deita": Pool(
        "deita-pool",
        "DEITA 'sota' pool",
        "pools/deita-sota-306k-annotated.jsonl",
        "306K",
        "pools/deita-sota-tags.json",
        "graphs/deita-sota-tags3059-e5mistral-t0.9.npz",
        6_000,
        2.0e-5,
        0.1,
        2048,
        4,
        4,
        1100,
        3059,
        306_000,
        None,
    ),
}

#: Baselines at 50K on Tulu 3 (SPEC section 4) and the selector options that encode them.
METHODS: dict[str, tuple[dict, str]] = {
    "mig": (
        {"phi": "pow", "phi_a": 1.0e-6, "phi_b": 0.8, "prop_weight": 1.0, "norm": False},
        "MIG: label graph of E5-Mistral-7B tag embeddings at T = 0.9, phi = (x + 1e-6)^0.8",
    ),
    "random": ({"seed": 42}, "Random (seed 42, Python's random.Random(42).sample)"),
    "ifd": ({"column": "ifd_score.content"}, "IFD: top IFD within [0, 1]"),
    "instag": ({}, "#InsTag: complexity-first tag coverage"),
    "deita": ({"threshold": 0.9}, "DEITA: score-first with a cosine repr filter at 0.9"),
    "car": ({"seed": 42}, "CaR: top overall + top per k-means cluster"),
    "qdit": ({"alpha": 0.7}, "QDIT: facility-location diversity + quality, alpha = 0.7"),
    "zip": ({}, "ZIP: compression-ratio greedy"),
}

#: Row names of the methods in the paper's tables.
METHOD_TITLES = {
    "mig": "MIG",
    "random": "Random",
    "ifd": "IFD",
    "instag": "#InsTag",
    "deita": "DEITA",
    "car": "CaR",
    "qdit": "QDIT",
    "zip": "ZIP",
    "full": "Full pool",
}

#: The authors' released subsets on the Hub, by (pool key, method).
RELEASED = {
    ("tulu3", m): f"xsample/tulu-3-{m}-50k"
    for m in ("mig", "random", "ifd", "instag", "deita", "car", "qdit", "zip")
}
RELEASED[("openhermes", "mig")] = "xsample/openhermes-2.5-mig-50k"
RELEASED[("deita", "mig")] = "xsample/deita-sota-mig-6k"
