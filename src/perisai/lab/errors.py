"""The lab's error types, apart so every lab module can raise them without import cycles."""

from __future__ import annotations

__all__ = ["LabError", "MissingBinaries", "MissingBinary", "ServerStartError"]


class LabError(Exception):
    """A problem the user can fix (lab already up, no root, no package): one clear line."""


class MissingBinary(LabError):
    """A server binary is not installed; the message names the Debian package that has it."""

    def __init__(self, binary: str, package: str) -> None:
        self.binary = binary
        self.package = package
        super().__init__(
            f"{binary} not found: install the Debian package '{package}' "
            "(or run `perisai lab up --install` as root)"
        )


class MissingBinaries(MissingBinary):
    """Several lab servers are not installed: one message says how to install them all."""

    def __init__(self, missing: list[MissingBinary], debian: list[str], others: list[str]) -> None:
        self.missing = missing
        self.binary = ", ".join(m.binary for m in missing)
        self.package = " ".join(debian)
        how = [f"sudo apt-get install -y {' '.join(debian)}"] if debian else []
        LabError.__init__(
            self,
            f"missing lab servers ({self.binary}); install them: "
            + "; ".join(how + others)
            + " (or run `perisai lab up --install` as root)",
        )


class ServerStartError(LabError):
    """A server did not come up in time; the message ends with the tail of its log."""

    def __init__(self, name: str, reason: str, log_tail: str = "") -> None:
        self.name = name
        self.log_tail = log_tail
        message = f"{name} did not start: {reason}"
        if log_tail:
            message += f"\n--- last lines of its log ---\n{log_tail}"
        super().__init__(message)
