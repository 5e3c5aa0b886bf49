import os
import subprocess
import sys

import pytest

from recbole_fame.data.converters import ConversionError, convert, k_core


from helpers import REPO, SHARED_DATASETS



def read_inter(path):
    with open(path) as f:
        header = f.readline().rstrip("\n").split("\t")
        return header, [line.rstrip("\n").split("\t") for line in f]


def test_sequences_keep_order_as_timestamps(tmp_path):
    raw = tmp_path / "seq.txt"
    raw.write_text("1 10 11 12\n2 11 10\n")
    path, count = convert("sequences", str(raw), str(tmp_path / "out"), "toy")
    assert path == str(tmp_path / "out" / "toy" / "toy.inter") and count == 5
    header, rows = read_inter(path)
    assert header == ["user_id:token", "item_id:token", "timestamp:float"]
    assert rows == [["1", "10", "1"], ["1", "11", "2"], ["1", "12", "3"], ["2", "11", "1"], ["2", "10", "2"]]


@pytest.mark.skipif(not os.path.isdir(SHARED_DATASETS), reason="../shared/datasets is absent")
def test_beauty_converts_with_the_published_counts(tmp_path):
    path, count = convert("sequences", os.path.join(SHARED_DATASETS, "Beauty.txt"), str(tmp_path), "beauty")
    _, rows = read_inter(path)
    assert count == len(rows) == 198_502
    assert len({r[0] for r in rows}) == 22_363 and len({r[1] for r in rows}) == 12_101


def test_k_core_repeats_until_stable():
    # u0..u3 rate x and z0..z3 (5 each); u4 rates x and z0..z2 (4). One pass drops u4 and z3,
    # which leaves u0..u3 with 4 ratings each: a second pass must drop them, and so everything.
    rows = [(u, i) for u in ("u0", "u1", "u2", "u3") for i in ("x", "z0", "z1", "z2", "z3")]
    rows += [("u4", i) for i in ("x", "z0", "z1", "z2")]
    assert len(k_core(rows, 5)) == 0
    assert k_core(rows, 4) == rows


def test_movielens_csv_and_dat(tmp_path):
    lines = [(u, i, 4.0, 1000 + 10 * u + i) for u in range(1, 7) for i in range(1, 7)]
    lines.append((7, 1, 3.5, 5))  # user 7: one rating, removed by the 5-core
    csv_file = tmp_path / "ratings.csv"
    csv_file.write_text("userId,movieId,rating,timestamp\n" + "".join(f"{u},{i},{r},{t}\n" for u, i, r, t in lines))
    dat_file = tmp_path / "ratings.dat"
    dat_file.write_text("".join(f"{u}::{i}::{int(r)}::{t}\n" for u, i, r, t in lines))
    for raw, name in ((csv_file, "ml-csv"), (dat_file, "ml-dat")):
        path, count = convert("movielens", str(raw), str(tmp_path / "out"), name)
        header, rows = read_inter(path)
        assert header == ["user_id:token", "item_id:token", "rating:float", "timestamp:float"]
        assert count == 36 and all(r[0] != "7" for r in rows)


def test_amazon_json_and_csv(tmp_path):
    records = [(f"U{u}", f"I{i}", 100 * u + i) for u in range(5) for i in range(5)]
    json_file = tmp_path / "reviews.json"
    json_file.write_text(
        "".join(f'{{"reviewerID": "{u}", "asin": "{i}", "unixReviewTime": {t}}}\n' for u, i, t in records)
    )
    csv_file = tmp_path / "ratings.csv"
    csv_file.write_text("user,item,rating,time\n" + "".join(f"{u},{i},5.0,{t}\n" for u, i, t in records))
    for raw in (json_file, csv_file):
        path, count = convert("amazon", str(raw), str(tmp_path / "out"), "amz", overwrite=True)
        assert count == 25
        assert read_inter(path)[1][0] == ["U0", "I0", "0"]


@pytest.mark.parametrize(
    "source, filename, content, message",
    [
        ("sequences", "s.txt", "1 2 3\n4\n", "s.txt:2: expected 'user item [item ...]'"),
        ("sequences", "s.txt", "", "s.txt is empty"),
        ("movielens", "ratings.csv", "userId,movieId,rating,timestamp\n1,2,4.0\n", "ratings.csv:2: expected 4 columns"),
        ("movielens", "ratings.csv", "userId,movieId,rating,timestamp\n1,2,4.0,noon\n", "ratings.csv:2: timestamp 'noon' is not a number"),
        ("movielens", "ratings.csv", "user,item\n", "ratings.csv:1: expected the header"),
        ("movielens", "ratings.txt", "1 2 3 4\n", "unknown MovieLens format"),
        ("amazon", "r.json", '{"reviewerID": "u"}\n', "r.json:1: expected the keys"),
        ("amazon", "r.json", "{broken\n", "r.json:1: not a json object"),
        ("amazon", "r.csv", "u,i,5,100\nu,i\n", "r.csv:2: expected 'user,item,rating,time'"),
        ("amazon", "r.xml", "<a/>\n", "unknown Amazon format"),
    ],
)
def test_bad_input_names_file_and_line(tmp_path, source, filename, content, message):
    raw = tmp_path / filename
    raw.write_text(content)
    with pytest.raises(ConversionError) as excinfo:
        convert(source, str(raw), str(tmp_path / "out"), "bad")
    assert message in str(excinfo.value)
    assert str(raw) in str(excinfo.value)


def test_failed_conversion_keeps_the_existing_output(tmp_path):
    good = tmp_path / "good.txt"
    good.write_text("1 10 11\n")
    path, _ = convert("sequences", str(good), str(tmp_path), "data")
    before = open(path).read()
    bad = tmp_path / "bad.txt"
    bad.write_text("1 10 11\n2\n")
    with pytest.raises(ConversionError):
        convert("sequences", str(bad), str(tmp_path), "data")
    assert open(path).read() == before
    assert os.listdir(tmp_path / "data") == ["data.inter"]


def test_cli(tmp_path):
    raw = tmp_path / "seq.txt"
    raw.write_text("1 10 11 12\n")
    script = os.path.join(REPO, "dataset_atomic", "convert.py")
    ok = subprocess.run([sys.executable, script, "sequences", str(raw), "--name=toy"],
                        capture_output=True, text=True, cwd=tmp_path)
    assert ok.returncode == 0 and "wrote 3 interactions to dataset_atomic/toy/toy.inter" in ok.stdout
    bad = subprocess.run([sys.executable, script, "sequences", str(tmp_path / "none.txt"), "--name=x"],
                         capture_output=True, text=True, cwd=tmp_path)
    assert bad.returncode != 0 and "Input file not found" in bad.stderr and "Traceback" not in bad.stderr


# ---------------------------------------------------------------------------------------------
# Output names and paths, non-UTF-8 input, repeated users, malformed input, failed conversions


SCRIPT = os.path.join(REPO, "dataset_atomic", "convert.py")


def snapshot(root):
    """Every path under ``root`` with its bytes (or link target): equal snapshots mean nothing was
    written, moved or removed there."""
    found = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            if os.path.islink(path):
                found[os.path.relpath(path, root)] = ("link", os.readlink(path))
            elif os.path.isfile(path):
                with open(path, "rb") as f:
                    found[os.path.relpath(path, root)] = f.read()
            else:
                found[os.path.relpath(path, root)] = "folder"
    return found


def run_script(cwd, *args):
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True, cwd=cwd)


def assert_one_error_line(result):
    """The script's promise on failure: a non-zero exit and one ``error: ...`` line, no traceback."""
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    return result.stderr


BAD_NAMES = ["../x", "../../evil", "/abs", "", ".", "..", "a/b", "a\\b", "a\0b", "-x", ".hidden", "x\n"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_names_are_refused_before_anything_is_read_or_written(tmp_path, name):
    out = tmp_path / "a" / "b" / "out"  # "../.." from here still lands inside tmp_path
    out.mkdir(parents=True)
    name = str(tmp_path / "abs") if name == "/abs" else name
    before = snapshot(tmp_path)
    # The input does not exist: refusing the name must come first, not "Input file not found".
    with pytest.raises(ConversionError) as excinfo:
        convert("sequences", str(tmp_path / "absent.txt"), str(out), name)
    message = str(excinfo.value)
    assert repr(name) in message and "letters, digits, '-', '_' and '.'" in message
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("name", ["beauty", "ml-20m", "Sports_and_Outdoors", "v2.1", "0"])
def test_plain_names_are_accepted(tmp_path, name):
    raw = tmp_path / "seq.txt"
    raw.write_text("1 10 11\n")
    path, _ = convert("sequences", str(raw), str(tmp_path / "out"), name)
    assert path == str(tmp_path / "out" / name / f"{name}.inter") and os.path.isfile(path)


def test_a_symlinked_name_folder_pointing_outside_is_refused(tmp_path):
    raw = tmp_path / "seq.txt"
    raw.write_text("1 10 11\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "data").symlink_to(elsewhere)
    with pytest.raises(ConversionError) as excinfo:
        convert("sequences", str(raw), str(out), "data")
    assert "outside" in str(excinfo.value) and str(out / "data" / "data.inter") in str(excinfo.value)
    assert os.listdir(elsewhere) == []


def test_a_symlinked_output_file_pointing_outside_is_refused(tmp_path):
    raw = tmp_path / "seq.txt"
    raw.write_text("1 10 11\n")
    target = tmp_path / "precious.txt"
    target.write_bytes(b"keep me\n")
    (tmp_path / "out" / "data").mkdir(parents=True)
    (tmp_path / "out" / "data" / "data.inter").symlink_to(target)
    with pytest.raises(ConversionError, match="outside"):
        convert("sequences", str(raw), str(tmp_path / "out"), "data")
    assert target.read_bytes() == b"keep me\n"


def test_a_symlink_that_stays_inside_out_is_allowed(tmp_path):
    raw = tmp_path / "seq.txt"
    raw.write_text("1 10 11\n")
    (tmp_path / "out" / "real").mkdir(parents=True)
    (tmp_path / "out" / "data").symlink_to(tmp_path / "out" / "real")
    convert("sequences", str(raw), str(tmp_path / "out"), "data")
    assert os.path.isfile(tmp_path / "out" / "real" / "data.inter")


@pytest.mark.parametrize(
    "source, filename, good_line",
    [
        ("sequences", "s.txt", b"1 10 11\n"),
        ("movielens", "ratings.csv", b"userId,movieId,rating,timestamp\n"),
        ("movielens", "ratings.dat", b"1::10::4::100\n"),
        ("amazon", "r.json", b'{"reviewerID": "u", "asin": "i", "unixReviewTime": 1}\n'),
        ("amazon", "r.csv", b"u,i,5,100\n"),
    ],
)
def test_non_utf8_input_names_file_line_and_byte_offset(tmp_path, source, filename, good_line):
    raw = tmp_path / filename
    raw.write_bytes(good_line + "Zoé::é,x".encode("latin-1") + b"\n")  # 'é' in latin-1 is the byte 0xe9
    with pytest.raises(ConversionError) as excinfo:
        convert(source, str(raw), str(tmp_path / "out"), "bad")
    message = str(excinfo.value)
    assert f"{raw}:2:" in message
    assert f"byte offset {len(good_line) + 2} (counting from 0)" in message and "\\xe9" in message
    assert "must be UTF-8" in message


def test_utf8_bom_crlf_blank_lines_and_a_last_line_without_newline_are_read(tmp_path):
    lines = [f"{u},{i},4.5,{100 * u + i}" for u in range(1, 6) for i in range(1, 6)]
    csv_file = tmp_path / "ratings.csv"
    csv_file.write_bytes(("\ufeffuserId,movieId,rating,timestamp\r\n" + "\r\n\r\n".join(lines)).encode())
    dat_file = tmp_path / "ratings.dat"
    dat_file.write_bytes(("\r\n".join(line.replace(",", "::") for line in lines) + "\r\n  \r\n").encode())
    seq_file = tmp_path / "seq.txt"
    seq_file.write_bytes("\ufeffü 10 11\r\n\r\n2 11 10".encode())
    for source, raw, count in (("movielens", csv_file, 25), ("movielens", dat_file, 25), ("sequences", seq_file, 4)):
        path, written = convert(source, str(raw), str(tmp_path / "out"), "ok", overwrite=True)
        _, rows = read_inter(path)
        assert written == len(rows) == count
        assert all(r[-1].isdigit() for r in rows)  # no '\r' left on the last column
    assert rows[0] == ["ü", "10", "1"]  # the byte-order mark is not part of the first user


@pytest.mark.parametrize(
    "content, how",
    [("1 10 11\n2 10\n1 12 13\n", "different items"), ("1 10 11\n2 10\n1 10 11\n", "the same items")],
)
def test_a_user_on_two_lines_names_both_lines(tmp_path, content, how):
    # One line per user: positions restart on each line, so a second line's timestamps would
    # collide with the first's. Identical lines are refused as well (a file pasted twice).
    raw = tmp_path / "seq.txt"
    raw.write_text(content)
    with pytest.raises(ConversionError) as excinfo:
        convert("sequences", str(raw), str(tmp_path / "out"), "dup")
    message = str(excinfo.value)
    assert f"{raw}:3:" in message and "user '1'" in message and "lines 1 and 3" in message and how in message
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "source, filename, content, message",
    [
        ("sequences", "s.txt", "\n  \n\n", "s.txt has no interactions"),
        ("movielens", "ratings.csv", "userId,movieId,rating,timestamp\n", "ratings.csv has no interactions"),
        ("movielens", "ratings.csv", "\n", "ratings.csv:1: expected the header"),
        ("movielens", "ratings.csv", "userId,movieId,rating,timestamp\n1,2,good,3\n", "ratings.csv:2: rating 'good' is not a number"),
        ("movielens", "ratings.csv", "userId,movieId,rating,timestamp\n1,2,4,nan\n", "ratings.csv:2: timestamp 'nan' is not a finite number"),
        ("movielens", "ratings.csv", "userId,movieId,rating,timestamp\n1,2,4,1\n,2,4,1\n", "ratings.csv:3: user '' is empty"),
        ("movielens", "ratings.csv", 'userId,movieId,rating,timestamp\n"1,2,4,1\n', "ratings.csv:2: malformed csv"),
        ("movielens", "ratings.csv", "userId,movieId,rating,timestamp\n1,2,4,1\r5\n", "ratings.csv:2: malformed csv"),
        ("movielens", "ratings.dat", "1::2::4::1\n1::2::4\n", "ratings.dat:2: expected 4 columns"),
        ("movielens", "ratings.dat", "1::2::4::1\n1::2\t3::4::1\n", "ratings.dat:2: item '2\\t3' is empty or holds a control character"),
        ("amazon", "r.json", "[1, 2]\n", "r.json:1: expected a json object"),
        ("amazon", "r.json", "\n5\n", "r.json:2: expected a json object"),
        ("amazon", "r.json", "null\n", "r.json:1: expected a json object"),
        ("amazon", "r.json", '{"reviewerID": "u", "asin": "i", "unixReviewTime": true}\n', "r.json:1: unixReviewTime True is not a number"),
        ("amazon", "r.json", '{"reviewerID": "u", "asin": "i", "unixReviewTime": 1e999}\n', "r.json:1: unixReviewTime inf is not a finite number"),
        ("amazon", "r.json", '{"reviewerID": ["u"], "asin": "i", "unixReviewTime": 1}\n', "r.json:1: reviewerID ['u'] is not a string"),
        ("amazon", "r.csv", 'user,item,rating,time\n"u\tv",i,5,100\n', "r.csv:2: user 'u\\tv' is empty or holds a control character"),
        ("amazon", "r.csv", "user,item,rating,time\n", "r.csv has no interactions"),
        ("amazon", "r.csv", "u,i,5,100\nu,i,5,noon\n", "r.csv:2: time 'noon' is not a number"),
    ],
)
def test_malformed_input_names_file_and_line(tmp_path, source, filename, content, message):
    raw = tmp_path / filename
    raw.write_bytes(content.encode())  # bytes: no newline translation of the '\r' cases
    with pytest.raises(ConversionError) as excinfo:
        convert(source, str(raw), str(tmp_path / "out"), "bad")
    assert str(raw) + message.split(filename, 1)[1] in str(excinfo.value)
    assert not (tmp_path / "out").exists()


def test_quoted_csv_fields_are_read_and_later_lines_keep_their_numbers(tmp_path):
    raw = tmp_path / "r.csv"
    # A quoted comma stays in the id; a quoted rating spans lines 2-3, so the bad time is on line 5.
    raw.write_text('user,item,rating,time\n"u,1",i,"5\nstars",100\n"u,1",j,4,101\nu2,i,3,late\n')
    with pytest.raises(ConversionError, match=r"r\.csv:5: time 'late' is not a number"):
        convert("amazon", str(raw), str(tmp_path / "out"), "q", min_core=1)
    raw.write_text('user,item,rating,time\n"u,1",i,"5\nstars",100\n"u,1",j,4,101\n')
    path, count = convert("amazon", str(raw), str(tmp_path / "out"), "q", min_core=1)
    assert count == 2 and read_inter(path)[1] == [["u,1", "i", "100"], ["u,1", "j", "101"]]


@pytest.mark.parametrize(
    "bad",
    [
        b"1 10 11\n\xff\xfe 2\n",  # not UTF-8
        b"1 10 11\n2 10\n1 12\n",  # a repeated user
        b"1 10 11\n2\n",  # a line without items
    ],
)
def test_a_failed_conversion_leaves_the_output_byte_identical(tmp_path, bad):
    good = tmp_path / "good.txt"
    good.write_text("7 70 71\n8 80\n")
    out = tmp_path / "out"
    path, _ = convert("sequences", str(good), str(out), "data")
    before = snapshot(tmp_path)
    raw = tmp_path / "bad.txt"
    raw.write_bytes(bad)
    before["bad.txt"] = bad
    with pytest.raises(ConversionError):
        convert("sequences", str(raw), str(out), "data")
    assert snapshot(tmp_path) == before  # the output, its folder and everything around: unchanged


def test_script_errors_are_one_line_and_write_nothing(tmp_path):
    cwd = tmp_path / "a" / "b"
    (cwd / "dataset_atomic" / "data").mkdir(parents=True)
    (cwd / "dataset_atomic" / "data" / "data.inter").write_bytes(b"user_id:token\titem_id:token\n1\t2\n")
    (cwd / "latin1.txt").write_bytes("1 caf\xe9\n".encode("latin-1"))
    (cwd / "dup.txt").write_text("1 10\n2 20\n1 11\n")
    before = snapshot(tmp_path)
    cases = [
        (["sequences", "dup.txt", "--name=../../evil"], "dataset name '../../evil' is not allowed"),
        (["sequences", "latin1.txt", "--name=data", "--overwrite"], "latin1.txt:1: bytes b'\\xe9' at byte offset 5 (counting from 0)"),
        (["sequences", "dup.txt", "--name=data", "--overwrite"], "user '1' is on lines 1 and 3"),
        (["sequences", "dup.txt", "--name=data"], "data.inter exists: add --overwrite to replace it"),
    ]
    for args, expected in cases:
        assert expected in assert_one_error_line(run_script(cwd, *args))
    assert snapshot(tmp_path) == before
