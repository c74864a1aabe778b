"""LLM workloads: what `runner bench --level llm` measures on a text-generation model (batch
sizes, prompt and generation lengths, scenario, run length, the server scenario's arrival rate
and token-latency bounds) and how it judges accuracy (perplexity, KL divergence and same-top-1
against the reference, greedy generation), one TOML file each under `workloads/llm/`.

A model-level workload cannot say this: its figures are per fixed input shape, an LLM's per
prompt and generation length. The fields are read and checked as a model-level workload's are
(zoo.workload_fields), so a typo is a one-line error naming the file and field.

A file may carry the server scenario's settings whatever its own scenario: they are what a run
switched to the server scenario (`--scenario server`) uses when the command line gives none.
So what runs is `in_scenario(scenario)`, which keeps each setting only in the scenarios that
read it (LoadGen ignores a TTFT bound outside a server run, and asicperf refuses one there).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ir.errors import AsicperfError
from passes.pipeline import PipelineError, split_options
from zoo import workload_fields as fields
from zoo.catalog import ZOO
from zoo.llm.perplexity import MIN_CHUNKS, MIN_CONTEXT
from zoo.model import TEXT_GENERATION
from zoo.workload import WORKLOAD_DIR

LlmScenario = Literal["single-stream", "offline", "server"]

LLM_WORKLOAD_DIR = WORKLOAD_DIR / "llm"

# The greedy-generation prompt of a workload that names none: plain factual prose, whose
# continuation a small model gets right, so a drifting candidate shows where it parts.
DEFAULT_GREEDY_PROMPT = "The Python programming language was created by Guido van Rossum, who"


@dataclass(frozen=True)
class LlmWorkload:
    """One LLM measurement plan: a LoadGen run per (batch size, prompt length), each sample a
    static batch of `batch_size` prompts of `prompt_len` tokens that generates `gen_len`
    tokens greedily. Fields without a default must be in every LLM workload file."""

    name: str
    model: str  # a zoo text-generation model, or an .onnx path
    scenario: LlmScenario
    target: str = "onnxruntime"
    target_options: Mapping[str, str] = field(default_factory=dict)
    pipeline: str = ""  # pass pipeline spec; "" runs the model as written
    batch_sizes: tuple[int, ...] = (1,)
    prompt_lens: tuple[int, ...] = (128,)
    gen_len: int = 128  # new tokens per sequence
    min_duration_s: float = 10.0  # LoadGen's minimum, per run
    min_queries: int = 4  # LoadGen's minimum query count, per run
    server_rate: float | None = None  # server: requests (samples, one batch each) per second
    ttft_bound_ms: float | None = None  # server: time to first token, at the percentile
    tpot_bound_ms: float | None = None  # server: time per output token, at the percentile
    latency_percentile: float | None = None  # None: LoadGen's (0.9 single-stream, 0.99 server)
    perplexity_context: int = 512  # llama.cpp's n_ctx: tokens per chunk
    perplexity_chunks: int = 4  # chunks of the evaluation text scored
    greedy_tokens: int = 32  # tokens generated from `greedy_prompt`, compared with the reference
    greedy_prompt: str = DEFAULT_GREEDY_PROMPT
    max_kl_mean: float | None = None  # thresholds; None: not judged
    min_same_top1: float | None = None
    max_perplexity_ratio: float | None = None  # candidate perplexity / reference perplexity

    def to_json(self) -> dict[str, Any]:
        return fields.fields_json(self)

    @property
    def target_spec(self) -> str:
        """The target with its options, as `--target` takes it: "onnxruntime{threads=2}"."""
        return fields.target_spec(self.target, self.target_options)

    def in_scenario(self, scenario: str) -> LlmWorkload:
        """This workload as run in `scenario`: the settings of other scenarios
        (`SCENARIO_ONLY`) dropped, the server's rate and bounds kept for a server run. A
        scenario LLM runs do not have (multi-stream) is a WorkloadError saying why."""
        checked = check_llm_field("scenario", scenario, "scenario")
        return fields.in_scenario(self, checked, SCENARIO_ONLY)


# Fields that LoadGen reads in some scenarios only, and those scenarios.
SCENARIO_ONLY: dict[str, tuple[str, ...]] = {
    "server_rate": ("server",),
    "ttft_bound_ms": ("server",),
    "tpot_bound_ms": ("server",),
    "latency_percentile": ("single-stream", "server"),
}
_SERVER_NEEDS = ("server_rate", "ttft_bound_ms", "tpot_bound_ms")


def _text_generator(raw: object) -> str:
    """A zoo text-generation model, or a path to an ONNX decoder."""
    model = fields.text(raw)
    if model in ZOO:
        if ZOO[model].task != TEXT_GENERATION:
            raise fields.FieldError(
                f"names zoo model {model!r}, which does not generate text "
                "(`runner bench --level model` measures it)"
            )
        return model
    if not model.endswith(".onnx"):
        generators = [name for name, entry in ZOO.items() if entry.task == TEXT_GENERATION]
        raise fields.FieldError(
            f"must be a zoo text-generation model ({', '.join(generators)}) or an .onnx path, "
            f"got {model!r}"
        )
    return model


def _scenario(raw: object) -> str:
    if raw == "multi-stream":
        raise fields.FieldError(
            "multi-stream is not supported for LLM runs: LoadGen's multi-stream figure is the "
            "latency of a query of several samples to its last one, not a per-token latency "
            "(TTFT, TPOT), and MLPerf's LLM benchmarks define no multi-stream scenario"
        )
    return fields.choice(LlmScenario)(raw)


def _prompt(raw: object) -> str:
    if not fields.text(raw).strip():
        raise fields.FieldError("must not be empty: greedy generation needs a prompt")
    return str(raw)


_CHECKS: dict[str, fields.Check] = {
    "name": fields.name,
    "model": _text_generator,
    "scenario": _scenario,
    "target": fields.name,
    "target_options": fields.string_table,
    "pipeline": fields.pipeline,
    "batch_sizes": fields.positive_ints,
    "prompt_lens": fields.positive_ints,
    "gen_len": fields.positive_int,
    "min_duration_s": fields.non_negative,
    "min_queries": fields.positive_int,
    "server_rate": fields.positive,
    "ttft_bound_ms": fields.positive,
    "tpot_bound_ms": fields.positive,
    "latency_percentile": fields.percentile,
    "perplexity_context": fields.int_at_least(
        MIN_CONTEXT, "the second half of each chunk must score a token"
    ),
    "perplexity_chunks": fields.int_at_least(
        MIN_CHUNKS, "llama.cpp's perplexity needs at least two chunks"
    ),
    "greedy_tokens": fields.positive_int,
    "greedy_prompt": _prompt,
    "max_kl_mean": fields.non_negative,
    "min_same_top1": fields.unit,
    "max_perplexity_ratio": fields.at_least(1),
}
fields.require_every_field_checked(LlmWorkload, _CHECKS)


def check_llm_field(key: str, raw: object, where: str) -> Any:
    """`raw` checked as LLM workload field `key`, for the command line's overrides
    (`--prompt-len` as `prompt_lens` [128, 512], `--gen-len`, `--rate` as `server_rate`,
    `--batch` as `batch_sizes`): a bad one is a WorkloadError naming `where` (the option)."""
    return fields.check_value(_CHECKS, key, raw, where)


def _from_text(convert: Callable[[str], object], expected: str) -> Callable[[object], object]:
    """An option's text as `convert` reads it, else a FieldError saying what was `expected`;
    a value argparse already typed is left for the field's check."""

    def parse(raw: object) -> object:
        if not isinstance(raw, str):
            return raw
        try:
            return convert(raw)
        except ValueError:
            raise fields.FieldError(f"must be {expected}, got {raw!r}") from None

    return parse


def _sizes(text: str) -> list[int]:
    """The text "128,512" as [128, 512], sorted and without repeats, as the runs go."""
    return sorted({int(item) for item in text.split(",")})


def _as_given(raw: object) -> object:
    return raw


_int = _from_text(int, "an integer")
_float = _from_text(float, "a number")
_int_list = _from_text(_sizes, "integers separated by commas, like 128,512")

# The command line's options (argparse's names) -> the field each sets, its flag, and how its
# text becomes the field's raw value (then checked as the field is in a file). `--target` sets
# two fields, the target and its options (`_target_fields`).
_OPTIONS: dict[str, tuple[str, str, Callable[[object], object]]] = {
    "model": ("model", "--model", _as_given),
    "pipeline": ("pipeline", "--pipeline", _as_given),
    "batch": ("batch_sizes", "--batch", _int_list),
    "prompt_len": ("prompt_lens", "--prompt-len", _int_list),
    "gen_len": ("gen_len", "--gen-len", _int),
    "rate": ("server_rate", "--rate", _float),
    "ttft_bound": ("ttft_bound_ms", "--ttft-bound", _float),
    "tpot_bound": ("tpot_bound_ms", "--tpot-bound", _float),
    "min_duration": ("min_duration_s", "--min-duration", _float),
    "min_queries": ("min_queries", "--min-queries", _int),
    "latency_percentile": ("latency_percentile", "--latency-percentile", _float),
}
_FLAGS = {field_name: flag for field_name, flag, _ in _OPTIONS.values()}


def _target_fields(spec: object) -> dict[str, Any]:
    target, options = split_options(str(spec), str(spec))
    return {"target": target, "target_options": options}


def llm_overrides(base: LlmWorkload, given: Mapping[str, object]) -> LlmWorkload:
    """`base` with the command line's options (`given`: argparse's option names, as in
    `_OPTIONS`, and "target", to their values, text or already numbers), each checked as its
    field is in a file, and checked together: a server run needs a rate and both bounds
    from the workload or the options, and a server option in another scenario is refused
    rather than ignored. The result is the workload as it runs, `in_scenario` its scenario."""
    changes: dict[str, Any] = {}
    for option, raw in given.items():
        if option == "target":
            try:
                changes.update(_target_fields(raw))
            except PipelineError as error:
                raise fields.WorkloadError(f"--target '{raw}': {error}") from None
            continue
        if option not in _OPTIONS:
            raise ValueError(f"no LLM workload field is set by option {option!r}")
        key, flag, parse = _OPTIONS[option]
        try:
            value = parse(raw)
        except fields.FieldError as error:
            raise fields.WorkloadError(f"{flag}: {error}") from None
        changes[key] = check_llm_field(key, value, flag)
    workload = dataclasses.replace(base, **changes)
    for key, scenarios in SCENARIO_ONLY.items():
        if key in changes and workload.scenario not in scenarios:
            raise fields.WorkloadError(
                f"{_FLAGS[key]}: applies to {' and '.join(scenarios)} runs only, "
                f"not {workload.scenario}"
            )
    if workload.scenario == "server":
        for key in _SERVER_NEEDS:
            if getattr(workload, key) is None:
                raise fields.WorkloadError(
                    f"the server scenario needs {_FLAGS[key]}: workload "
                    f"'{workload.name}' sets no {key}"
                )
    return workload.in_scenario(workload.scenario)


def _parse(path: Path, data: Mapping[str, object]) -> LlmWorkload:
    workload = LlmWorkload(
        **fields.parse_fields(path, data, LlmWorkload, _CHECKS, "an LLM workload")
    )
    if workload.scenario == "server":
        for key in _SERVER_NEEDS:
            if getattr(workload, key) is None:
                raise fields.field_error(path, key, "is needed by the server scenario")
    return workload


def load_llm_workload(path: Path) -> LlmWorkload:
    """The LLM workload in a TOML file, every field checked."""
    return _parse(path, fields.read_toml(path))


@functools.cache
def shipped_llm_workloads() -> dict[str, LlmWorkload]:
    """The LLM workloads in `LLM_WORKLOAD_DIR`, by name."""
    paths = sorted(LLM_WORKLOAD_DIR.glob("*.toml"))
    workloads = [load_llm_workload(path) for path in paths]
    return {workload.name: workload for workload in workloads}


def llm_workload_for(name_or_path: str) -> LlmWorkload:
    """A shipped LLM workload by name, else the LLM workload file at that path."""
    shipped = shipped_llm_workloads().get(name_or_path)
    if shipped is not None:
        return shipped
    path = Path(name_or_path)
    if not path.is_file():
        raise fields.WorkloadError(
            f"'{name_or_path}': no such file and no shipped LLM workload of that name "
            f"(known: {', '.join(shipped_llm_workloads())})"
        )
    return load_llm_workload(path)


def default_llm_workload(model: str) -> LlmWorkload:
    """The shipped LLM workload of `model`; for any other text generator (a user's ONNX
    decoder), every default: batch 1, a 128-token prompt and 128 new tokens, single-stream,
    accuracy measured but not judged. A zoo model that does not generate text is refused."""
    for workload in shipped_llm_workloads().values():
        if workload.model == model:
            return workload
    if model in ZOO and ZOO[model].task != TEXT_GENERATION:
        raise AsicperfError(
            f"'{model}' does not generate text: `runner bench --level model` measures it"
        )
    return LlmWorkload(name=Path(model).stem, model=model, scenario="single-stream")
