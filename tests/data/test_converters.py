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
        path, count = convert("amazon", str(raw), str(tmp_path / "out"), "amz")
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
