"""Rewriting the global and best model files (jobcode/rt_files.py): readers see whole files, pages are reused."""

from __future__ import annotations

import os

from resontech_nb.jobcode import rt_files


def write_text(path, text: str) -> None:
    rt_files.write_swapped(str(path), lambda fh: fh.write(text.encode()))


def test_each_write_swaps_the_new_file_in_and_keeps_the_last_one_as_the_spare(tmp_path):
    path = tmp_path / "model.pt"
    write_text(path, "first, and longer")
    assert path.read_text() == "first, and longer"
    first_inode = path.stat().st_ino
    write_text(path, "second")
    assert path.read_text() == "second"
    spare = tmp_path / ".model.pt.spare"
    assert spare.read_text() == "first, and longer"  # a reader of the first file still had it whole
    write_text(path, "third")
    assert path.read_text() == "third"  # written over the first file's own pages: no fresh file each round
    assert path.stat().st_ino == first_inode
    assert spare.read_text() == "second"
    rt_files.remove_spare(str(path))
    rt_files.remove_spare(str(path))  # nothing to remove is fine
    assert sorted(os.listdir(tmp_path)) == ["model.pt"]


def test_without_the_swap_the_spare_replaces_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(rt_files, "_exchange", lambda first, second: False)
    path = tmp_path / "model.pt"
    for text in ("one", "two", "three"):
        write_text(path, text)
        assert path.read_text() == text
        assert not (tmp_path / ".model.pt.spare").exists()
