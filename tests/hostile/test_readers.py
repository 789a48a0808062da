"""The shared guards the sweep relies on, one by one (issue 21, item 3): only regular files are
read, walks and globs end on symlink loops, and a path a file names stays inside its folder."""

from __future__ import annotations

import os
import time

import pytest
from corpus import loop_folder, png, tiny_onnx

from deploy_ran.artifacts import load_onnx
from deploy_ran.errors import DeployRanError, OnnxFileError
from deploy_ran.fileio import check_name_length
from deploy_ran.reading import (
    NotARegularFileError,
    glob_files,
    read_regular_bytes,
    read_utf8_lines,
    require_regular_file,
    resolve_inside,
    walk_files,
)


def test_fifo_device_and_folder_are_refused_without_opening(tmp_path):
    fifo = tmp_path / "list.txt"
    os.mkfifo(fifo)
    started = time.perf_counter()
    for path, kind in ((fifo, "FIFO"), ("/dev/zero", "character device"), (tmp_path, "folder")):
        with pytest.raises(NotARegularFileError, match=kind):
            read_regular_bytes(path, "list")
    assert time.perf_counter() - started < 5  # a FIFO open would block forever


def test_symlink_loop_file_is_a_clear_error(tmp_path):
    loop = tmp_path / "x"
    loop.symlink_to("x")
    with pytest.raises(DeployRanError, match="cannot be read"):
        require_regular_file(loop, "image")


def test_walk_and_glob_visit_each_folder_once_through_loops(tmp_path):
    folder = loop_folder(tmp_path / "loops")
    (folder / "sub" / "deeper").mkdir()
    png(folder / "sub" / "deeper" / "c.png", seed=2)
    (folder / "sub" / "deeper" / "back").symlink_to("../..")
    found = sorted(p.relative_to(folder).as_posix() for p in walk_files(folder))
    assert found == ["a.png", "sub/b.png", "sub/deeper/c.png"]
    globbed = [p.relative_to(folder).as_posix() for p in glob_files(f"{folder}/**/*.png")]
    assert globbed == ["a.png", "sub/b.png", "sub/deeper/c.png"]
    assert [p.name for p in glob_files(f"{folder}/sub/*.png")] == ["b.png"]


@pytest.mark.parametrize("name", ["/etc/hostname", "../victim/data.bin", "a/../../x"])
def test_paths_a_file_names_stay_inside_its_folder(tmp_path, name):
    with pytest.raises(DeployRanError, match="absolute|outside"):
        resolve_inside(tmp_path, name, "external-data location")
    assert resolve_inside(tmp_path, "w/data.bin") == tmp_path.resolve() / "w" / "data.bin"


def test_onnx_external_data_outside_its_folder_is_refused_even_without_weights(tmp_path):
    (tmp_path / "victim").mkdir()
    (tmp_path / "victim" / "data.bin").write_bytes(bytes(16))
    (tmp_path / "m").mkdir()
    for location in ("/etc/hostname", "../victim/data.bin"):
        path = tiny_onnx(tmp_path / "m" / "ext.onnx", [1, 3, 8, 8], external=location)
        for weights in (False, True):
            with pytest.raises(OnnxFileError, match="absolute|outside"):
                load_onnx(path, load_weights=weights)


def test_labels_in_latin1_name_the_line(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_bytes("cat\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(DeployRanError, match="line 2") as err:
        read_utf8_lines(path, "labels file")
    assert "iconv" in err.value.hint


def test_output_names_past_name_max_are_refused_before_work(tmp_path):
    check_name_length(tmp_path / ("n" * 200))
    with pytest.raises(DeployRanError, match="limit of") as err:
        check_name_length(tmp_path / ("n" * 240 + ".onnx"))
    assert err.value.param == "output"
