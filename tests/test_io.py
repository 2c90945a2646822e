"""Atomic writes: all or nothing, and files as readable as the umask says (not mkstemp's 0600)."""

import os
import stat

import pytest

from kdlight.utils.io import atomic_path, write_json


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_written_files_respect_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        write_json(tmp_path / "results.json", {"a": 1})
        with atomic_path(tmp_path / "folder") as tmp:
            tmp.unlink()
            tmp.mkdir()
            (tmp / "inner.txt").write_text("x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "results.json").stat().st_mode) == mode
    assert stat.S_IMODE((tmp_path / "folder" / "inner.txt").stat().st_mode) == mode
    assert stat.S_IMODE((tmp_path / "folder").stat().st_mode) == 0o777 & ~umask


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    write_json(tmp_path / "results.json", {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "results.json") as tmp:
            tmp.write_text("half")
            raise RuntimeError("disk full")
    assert (tmp_path / "results.json").read_text().strip().startswith("{") and len(list(tmp_path.iterdir())) == 1
