"""The one error type the engine raises on purpose: a message a person can act on, never a traceback."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Problem:
    """One thing wrong, with where it is and how to fix it."""

    message: str
    fix: str = ""
    line: int | None = None  # 1-based line in the dataset file, when it is about a line
    field: str | None = None  # the TrainConfig field it is about (TrainConfig.validate): a UI points at it

    def render(self, path: str | None = None) -> str:
        where = ""
        if path and self.line is not None:
            where = f"{path}:{self.line}: "
        elif self.line is not None:
            where = f"line {self.line}: "
        elif path:
            where = f"{path}: "
        text = f"{where}{self.message}"
        if self.fix:
            text += f"\n    fix: {self.fix}"
        return text


class TrainerError(Exception):
    """A failure the user can act on. `exit_code` 2 means bad input or settings; 1 means the run failed."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str = "", problems: list[Problem] | None = None,
                 path: str | None = None, exit_code: int | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.problems = list(problems or [])
        self.path = path
        if exit_code is not None:
            self.exit_code = exit_code

    def render(self, limit: int = 20) -> str:
        lines = [self.message]
        for p in self.problems[:limit]:
            lines.append("  " + p.render(self.path).replace("\n", "\n  "))
        if len(self.problems) > limit:
            lines.append(f"  ... and {len(self.problems) - limit} more problem(s) not shown")
        if self.hint:
            lines.append(f"hint: {self.hint}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "message": self.message,
            "hint": self.hint,
            "path": self.path,
            "problems": [{"line": p.line, "field": p.field, "message": p.message, "fix": p.fix}
                         for p in self.problems],
        }


class Stopped(TrainerError):
    """The user stopped the run before it trained (e.g. during the model's download): nothing failed, nothing is
    lost; exit code 130, as for an interrupt."""

    exit_code = 130


class InputError(TrainerError):
    """Bad dataset, bad flags or contradictory settings: refused before any model loads."""

    exit_code = 2


class DatasetError(InputError):
    """The dataset file cannot be used as it is; `problems` names each bad line."""
