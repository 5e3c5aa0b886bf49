"""recbole_fame.files: results, tables, figures and checkpoints are written whole or not at all."""

import json
import os

import pytest

from recbole_fame.files import new_figure, replacing, save_figure, write_json, write_text


def test_an_error_while_writing_keeps_the_previous_file_and_no_temporary_one(tmp_path):
    path = tmp_path / "table.md"
    write_text(path, "old\n")
    with pytest.raises(RuntimeError, match="interrupted"):
        with replacing(path) as tmp:
            with open(tmp, "w") as f:
                f.write("half of the new")
            raise RuntimeError("interrupted")
    assert path.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["table.md"]

    write_text(path, "new\r\nlines as given\n")
    assert path.read_bytes() == b"new\r\nlines as given\n"
    assert os.listdir(tmp_path) == ["table.md"]


def test_json_and_a_missing_folder(tmp_path):
    path = tmp_path / "result.json"
    write_json(path, {"hit@10": 0.5, "file": tmp_path}, default=str)
    assert path.read_text().endswith("}\n")
    assert json.loads(path.read_text()) == {"hit@10": 0.5, "file": str(tmp_path)}
    with pytest.raises(FileNotFoundError, match=f"Cannot write .*: folder {tmp_path / 'nope'} does not exist"):
        write_text(tmp_path / "nope" / "x.md", "x")


def test_figures_in_the_format_of_their_extension(tmp_path):
    figure = new_figure(figsize=(2, 2))
    figure.subplots().plot([0, 1], [1, 0])
    save_figure(figure, tmp_path / "f.png", dpi=50)
    save_figure(figure, tmp_path / "f.pdf")
    assert (tmp_path / "f.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert (tmp_path / "f.pdf").read_bytes().startswith(b"%PDF")
    assert sorted(os.listdir(tmp_path)) == ["f.pdf", "f.png"]
