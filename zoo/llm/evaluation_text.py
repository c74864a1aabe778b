"""The text a language model's perplexity is measured on: the documentation topics that ship
with every CPython in `pydoc_data.topics` (what `help("assert")` prints).

Why this text: it is on every machine that runs asicperf (no download, no licence question, no
data set to cache), it is real English prose mixed with code, and it is large (about 465,000
characters in Python 3.11) so a 512-token context gives hundreds of chunks. It changes between
Python versions, so the record names the version and a digest pins the exact text: two
perplexities are comparable only when their digests match.
"""

from __future__ import annotations

import hashlib
import platform
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ir.errors import AsicperfError

SOURCE_MODULE = "pydoc_data.topics"


@dataclass(frozen=True)
class EvaluationText:
    text: str
    source: str  # "pydoc_data.topics, Python 3.11.7"

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    def tokens(self, encode: Callable[[str], list[int]], bos_token: int | None) -> list[int]:
        """The token stream as llama.cpp's `perplexity` tokenizes its file: `encode` (without
        special tokens) preceded by the BOS token when the model adds one (`bos_token`; None
        for a model whose GGUF says `tokenizer.ggml.add_bos_token = false`)."""
        prefix = [] if bos_token is None else [bos_token]
        return prefix + list(encode(self.text))

    def to_json(self) -> dict[str, Any]:
        """What names the text in a result, without the text itself."""
        return {"source": self.source, "characters": len(self.text), "sha256": self.sha256}


def evaluation_text() -> EvaluationText:
    """Every topic of `pydoc_data.topics`, in sorted key order, each stripped of its leading and
    trailing newlines and separated from the next by one blank line: the dict's own order is an
    implementation detail of the generator that writes the module, the sorted order is not."""
    try:
        from pydoc_data.topics import topics
    except ImportError as error:
        raise AsicperfError(
            f"the perplexity text comes from the standard library's {SOURCE_MODULE}, which this "
            f"Python ({platform.python_version()}) lacks: install its full standard library"
        ) from error
    text = "\n\n".join(topics[key].strip("\n") for key in sorted(topics))
    return EvaluationText(text, f"{SOURCE_MODULE}, Python {platform.python_version()}")
