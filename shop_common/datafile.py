from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

Item = TypeVar("Item", bound=BaseModel)


class DataFileError(ValueError):
    """A data file that is missing or does not hold what the service needs."""


def load_list(path: Path, model: type[Item]) -> list[Item]:
    """Read and validate a JSON list of `model` records; errors name the file and the problem."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataFileError(f"cannot read data file {path}: {exc.strerror or exc}") from exc
    try:
        return TypeAdapter(list[model]).validate_json(raw)  # type: ignore[valid-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise DataFileError(
            f"invalid data file {path}: {exc.error_count()} problem(s), first at "
            f"[{where}]: {first['msg']}"
        ) from exc
