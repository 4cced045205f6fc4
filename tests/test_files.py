"""Rewriting the global and best model files (jobcode/rt_files.py): readers see whole files, pages are reused."""

from __future__ import annotations

import os
import zipfile

import numpy as np
import torch
from nvflare.apis.event_type import EventType
from nvflare.apis.fl_context import FLContext
from nvflare.app_common.abstract.model import make_model_learnable
from nvflare.app_common.app_constant import AppConstants

from resontech_nb.jobcode import rt_files, rt_persistor


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


def test_rounds_before_the_last_are_saved_without_zip_checksums_and_the_last_with_them(tmp_path):
    path = tmp_path / "global_model.pt"

    class Persistor(rt_persistor.RTModelPersistor):
        def _model_path(self, fl_ctx: FLContext) -> str:
            return str(path)

    persistor = Persistor()
    persistor._reference = {"w": (torch.Size([1000]), torch.float32)}  # the model's shapes, as from load_model
    fl_ctx = FLContext()
    fl_ctx.set_prop(AppConstants.START_ROUND, 1, private=True, sticky=False)  # a job resumed at round 1
    fl_ctx.set_prop(AppConstants.NUM_ROUNDS, 3, private=True, sticky=False)
    for number, checked in ((1, False), (2, False), (3, True)):
        fl_ctx.set_prop(AppConstants.CURRENT_ROUND, number, private=True, sticky=False)
        persistor.save_model(make_model_learnable({"w": np.full(1000, number, np.float32)}, {}), fl_ctx)
        assert torch.equal(torch.load(path, weights_only=True)["w"], torch.full((1000,), float(number)))
        assert (zipfile.ZipFile(path).testzip() is None) == checked, number
    fl_ctx.remove_prop(AppConstants.CURRENT_ROUND)  # a workflow that says nothing of rounds: the checked kind
    persistor.save_model(make_model_learnable({"w": np.zeros(1000, np.float32)}, {}), fl_ctx)
    assert zipfile.ZipFile(path).testzip() is None
    fl_ctx.set_prop(AppConstants.CURRENT_ROUND, 1, private=True, sticky=False)  # a job that stops after round 1
    persistor.save_model(make_model_learnable({"w": np.ones(1000, np.float32)}, {}), fl_ctx)
    assert zipfile.ZipFile(path).testzip() is not None
    persistor.handle_event(EventType.ABOUT_TO_END_RUN, fl_ctx)  # its end: the model it gives back gets them
    assert zipfile.ZipFile(path).testzip() is None
    assert torch.equal(torch.load(path, weights_only=True)["w"], torch.ones(1000))
    assert sorted(os.listdir(tmp_path)) == ["global_model.pt"]  # and the spare is gone
    with rt_persistor.without_checksums():
        pass
    from torch.utils.serialization import config

    assert config.save.compute_crc32  # the setting is back as it was


def test_checksums_added_afterwards_make_the_file_torch_would_have_written(tmp_path):
    from torch.utils.serialization import config

    state = {f"layer{i}.weight": torch.rand(64, 64) for i in range(3)} | {"steps": torch.tensor(7)}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    ours, theirs = tmp_path / "a" / "model.pt", tmp_path / "b" / "model.pt"  # torch names entries after the file
    with config.patch({"save.compute_crc32": False}):
        torch.save(state, ours)
    torch.save(state, theirs)
    assert zipfile.ZipFile(ours).testzip() is not None
    assert rt_files.add_zip_checksums(str(ours)) is True
    assert zipfile.ZipFile(ours).testzip() is None
    assert rt_files.add_zip_checksums(str(ours)) is False and rt_files.add_zip_checksums(str(theirs)) is False
    back = torch.load(ours, weights_only=True)
    assert all(torch.equal(back[k], v) for k, v in state.items())
    mine, torchs = ours.read_bytes(), theirs.read_bytes()
    differ = {
        info.filename.split("/", 1)[1]
        for info, other in zip(zipfile.ZipFile(ours).infolist(), zipfile.ZipFile(theirs).infolist(), strict=True)
        if info.CRC != other.CRC
    }
    assert len(mine) == len(torchs) and differ == {".data/serialization_id"}  # random in every save
    legacy = tmp_path / "legacy.pt"
    torch.save(state, legacy, _use_new_zipfile_serialization=False)
    assert rt_files.add_zip_checksums(str(legacy)) is False  # not a zip: left alone
