"""Running notebook cells in the test shell: one that must work, one that must end in a UsageError."""

from __future__ import annotations

from IPython.core.error import UsageError


def cell(ip, source: str):
    return ip.run_cell(source, store_history=True)


def ok(ip, source: str) -> None:
    result = cell(ip, source)
    assert result.success, result.error_in_exec or result.error_before_exec


def usage_error(ip, source: str) -> str:
    result = cell(ip, source)
    assert isinstance(result.error_in_exec, UsageError), result.error_in_exec or result.error_before_exec
    return str(result.error_in_exec)
