"""Code shipped inside every job (``custom/``): plain NVFlare + torch, no ``resontech_nb`` import."""

from pathlib import Path

JOBCODE_DIR = Path(__file__).resolve().parent
