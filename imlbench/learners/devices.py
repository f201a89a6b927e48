"""Where the torch learners compute."""

import torch


def resolve_device(device: str) -> torch.device:
    """`"auto"` is CUDA when present, else the CPU; anything else is passed to torch as is."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)
