"""The job handle every target returns: status, wait, rounds, result, abort, dashboard."""

from .handle import Job

__all__ = ["Job"]
