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


def test_outputs_replace_only_their_own_earlier_files(tmp_path):
    from recbole_fame.files import check_folder_outputs, check_replaceable, output_mark

    mine, theirs, old = tmp_path / "mine.md", tmp_path / "theirs.md", tmp_path / "old.md"
    write_text(mine, "# table\n" + output_mark("tool.py") + "\n")
    theirs.write_text("# notes\n")
    old.write_text("`python tool.py --x=1`\n| table |\n")
    check_replaceable(mine, "tool.py")
    check_replaceable(tmp_path / "new.md", "tool.py")
    check_replaceable(old, "tool.py", legacy="python tool.py")  # written before the marks existed
    check_replaceable(theirs, "tool.py", overwrite=True)
    for path, producer in ((theirs, "tool.py"), (mine, "other.py"), (tmp_path, "tool.py")):
        with pytest.raises(FileExistsError, match=f"{path} exists and was not written by {producer}"):
            check_replaceable(path, producer)

    figure = new_figure(figsize=(1, 1))
    save_figure(figure, tmp_path / "f.png", producer="tool.py", dpi=20)
    check_replaceable(tmp_path / "f.png", "tool.py")
    with pytest.raises(FileExistsError):
        check_replaceable(tmp_path / "f.png", "other.py")

    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "table.csv").write_text("a,b\n")
    with pytest.raises(FileExistsError, match=f"{folder / 'table.csv'} exists and was not written by tool.py"):
        check_folder_outputs(str(folder), ("table.md", "table.csv"), "tool.py")
    write_text(folder / "table.md", output_mark("tool.py") + "\n")  # the table vouches for the CSV
    check_folder_outputs(str(folder), ("table.md", "table.csv"), "tool.py")


def test_temporaries_of_killed_writers_are_removed(tmp_path):
    import subprocess
    import sys

    from recbole_fame.files import remove_stale_temporaries_in

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    alive_pid = os.getppid()
    for name in (f"a.pth.tmp{dead_pid}", f"a.pth.tmp{alive_pid}", f"b.pth.tmp{dead_pid}", f"notes.txt.tmp{dead_pid}"):
        (tmp_path / name).write_bytes(b"half")
    write_text(tmp_path / "a.pth", "x")  # a write of a.pth removes a dead writer's temporary of a.pth
    assert sorted(os.listdir(tmp_path)) == sorted(
        ["a.pth", f"a.pth.tmp{alive_pid}", f"b.pth.tmp{dead_pid}", f"notes.txt.tmp{dead_pid}"]
    )
    remove_stale_temporaries_in(str(tmp_path), ".pth")  # what a trainer does in its checkpoint folder
    assert f"b.pth.tmp{dead_pid}" in os.listdir(tmp_path)  # too recent: maybe another machine's
    old = os.path.getmtime(tmp_path / "a.pth") - 3600
    os.utime(tmp_path / f"b.pth.tmp{dead_pid}", (old, old))
    remove_stale_temporaries_in(str(tmp_path), ".pth")
    assert sorted(os.listdir(tmp_path)) == sorted(["a.pth", f"a.pth.tmp{alive_pid}", f"notes.txt.tmp{dead_pid}"])
