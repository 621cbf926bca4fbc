"""`local` images: deterministic, content-addressed archives of a prepared sandbox."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from engine.runs import localimages


def prepared(sandbox: Path, note: str = "v1") -> Path:
    for folder in ("work/bin", "work/logs", "work/app", "home/.cache", "tmp"):
        (sandbox / folder).mkdir(parents=True, exist_ok=True)
    (sandbox / "work/app/config").write_text(note)
    (sandbox / "home/.cache/x").write_text("cached")
    (sandbox / "work/logs/post_install.log").write_text("agent's")
    (sandbox / "work/agent.pid").write_text("123")
    (sandbox / "agent.py").write_text("agent")
    return sandbox


def test_same_content_same_id_and_agent_files_left_out(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first, size = localimages.save(home, prepared(tmp_path / "a"))
    again, _ = localimages.save(home, prepared(tmp_path / "b"))
    other, _ = localimages.save(home, prepared(tmp_path / "c", "v2"))
    assert first == again != other and size > 0
    assert len(list((home / "images" / "local").iterdir())) == 2
    target = tmp_path / "new"
    (target / "work").mkdir(parents=True)
    localimages.restore(home, first, target)
    assert (target / "work/app/config").read_text() == "v1"
    assert (target / "home/.cache/x").read_text() == "cached"
    assert not (target / "work/logs").exists() and not (target / "work/agent.pid").exists()
    assert not (target / "agent.py").exists()


def test_bad_ids_and_missing_archives_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a local image id"):
        localimages.image_path(tmp_path, "sha256:../../etc")
    with pytest.raises(Exception, match="is missing"):
        localimages.restore(tmp_path, "sha256:" + "0" * 64, tmp_path / "sb")


def test_an_archive_leaving_the_sandbox_is_refused(tmp_path: Path) -> None:
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        info = tarfile.TarInfo("../escaped")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    image_id = "sha256:" + "1" * 64
    path = localimages.image_path(tmp_path, image_id)
    path.parent.mkdir(parents=True)
    path.write_bytes(data.getvalue())
    (tmp_path / "sb").mkdir()
    with pytest.raises(tarfile.TarError):
        localimages.restore(tmp_path, image_id, tmp_path / "sb")
    assert not (tmp_path / "escaped").exists()
