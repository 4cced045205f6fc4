"""Only what pyproject.toml cannot say: the example notebooks in ``notebooks/`` also go into the wheel,
as ``resontech_nb/notebooks/``, so that ``resontech-nb quickstart`` and ``resontech-nb notebooks`` work
from an installed package while the repository keeps them at the top where Colab and Binder open them."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

NOTEBOOKS = Path(__file__).resolve().parent / "notebooks"


class BuildWithNotebooks(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return  # an editable install reads them from notebooks/ itself
        target = Path(self.build_lib) / "resontech_nb" / "notebooks"
        target.mkdir(parents=True, exist_ok=True)
        for notebook in sorted(NOTEBOOKS.glob("*.ipynb")):
            shutil.copy2(notebook, target / notebook.name)


setup(cmdclass={"build_py": BuildWithNotebooks})
