"""Argument checks shared by the PyTorch references' ``make(row, height, width, batch)`` (benchmarks/torch_*.py)."""


def _positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def check_hw(height, width, ok, requirement: str) -> None:
    """ValueError naming height or width when ``ok(value)`` is false; ``requirement`` says what is needed and why."""
    for name, value in (("height", height), ("width", width)):
        if not _positive_int(value) or not ok(value):
            raise ValueError(f"{name} must be {requirement}, got {value!r}")


def resolve_batch(batch, default: int) -> int:
    """``batch``, or ``default`` when None; a ValueError unless it is a positive int."""
    batch = default if batch is None else batch
    if not _positive_int(batch):
        raise ValueError(f"batch must be a positive int, got {batch!r}")
    return batch
