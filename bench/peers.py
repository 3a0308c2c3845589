"""Importing the peers the benchmarks compare imgindex with."""

from __future__ import annotations

import logging
import sys
import types
from typing import Any


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
