"""The job handle every target returns (status, wait, rounds, result, abort) and its round records."""

from .handle import Job
from .records import ClientRound, RoundRecord

__all__ = ["ClientRound", "Job", "RoundRecord"]
