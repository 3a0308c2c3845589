"""The tools the benchmarks run: imgindex itself, and the peers it is compared with."""

from __future__ import annotations

import logging
import shutil
import sys
import types
from pathlib import Path
from typing import Any


def imgindex_command() -> list[str]:
    """How to run imgindex: the script beside this Python, on the PATH, or as a module."""
    script = Path(sys.executable).parent / "imgindex"
    if script.exists():
        return [str(script)]
    found = shutil.which("imgindex")
    return [found] if found else [sys.executable, "-m", "imgindex"]


def imagededup_phash() -> Any:
    """imagededup's PHash class, without torch.

    imagededup imports torch and torchvision at import time, for its CNN
    method only; stand-ins for those modules keep them out (see
    bench/requirements.txt for the install).
    """
    for name, attrs in {
        "imagededup.methods.cnn": ("CNN",),
        "imagededup.utils.models": ("CustomModel", "MobilenetV3", "DEFAULT_MODEL_NAME"),
        "imagededup.utils.data_generator": ("img_dataloader",),
    }.items():
        module = types.ModuleType(name)
        module.__dict__.update(dict.fromkeys(attrs))
        sys.modules[name] = module
    from imagededup.methods import PHash  # type: ignore[import-untyped]

    assert "torch" not in sys.modules
    logging.getLogger("imagededup").setLevel(logging.ERROR)  # one warning per non-image otherwise
    return PHash
