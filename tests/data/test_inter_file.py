"""A malformed or incomplete .inter row stops the run naming the file, line and field, instead of
RecBole filling it in (a missing timestamp became the column's mean)."""

import os

import pytest

from recbole_fame.config import Config
from recbole_fame.data import prepare_data
from recbole_fame.data.inter_file import DataFileError, check_interaction_file
from recbole_fame.quick_start import run

HEADER = "user_id:token\titem_id:token\ttimestamp:float\n"
GOOD = "1\t10\t1\n1\t11\t2\n1\t12\t3\n"


@pytest.fixture
def config(tiny_config):
    return Config(model="SASRec", dataset="tiny", config_dict=tiny_config)


def _file(tmp_path, text):
    path = tmp_path / "x.inter"
    path.write_bytes(text.encode("latin-1"))
    return str(path)


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "is empty: an interaction file starts with a header"),
        ("\n\n", "is empty"),
        (HEADER, "has a header but no interactions"),
        (HEADER + "\n\n", "has a header but no interactions"),
        ("user_id\titem_id\ttimestamp\n1\t2\t3\n", ":1: header column 'user_id' is not 'name:type'"),
        ("user_id:token\titem_id:tok\ttimestamp:float\n", ":1: header column 'item_id:tok' is not 'name:type'"),
        ("user_id:token\titem_id:token\n1\t2\n", ":1: no 'timestamp' column (TIME_FIELD); its header has ['user_id', 'item_id']"),
        ("uid:token\titem_id:token\ttimestamp:float\n1\t2\t3\n", ":1: no 'user_id' column (USER_ID_FIELD)"),
        (HEADER + GOOD + "1\t13\n", ":5: 2 fields, but the header has 3 (no value for 'timestamp')"),
        (HEADER + "1\t10\t1\t7\n1\t11\t2\t7\n", ":2: 4 fields, but the header has 3"),  # pandas would shift the columns
        (HEADER + GOOD + '1\t"13\t4\n', ':5: a value holds a double quote'),
        (HEADER + GOOD + "1\t13\t\n", ":5: no value for 'timestamp'"),
        (HEADER + "1\t\t3\n", ":2: no value for 'item_id'"),
        (HEADER + GOOD + "1\t13\tnoon\n", ":5: 'timestamp' is 'noon', not a finite number"),
        (HEADER + GOOD + "1\t13\tnan\n", ":5: 'timestamp' is 'nan', not a finite number"),
        (HEADER + GOOD + "\n1\t13\t4\t9\n", ":6: 4 fields, but the header has 3"),
        (HEADER + GOOD + "\t\t\n", ":5: a line of separators without values"),
        (HEADER + "1\t\xe9\t3\n", ":2: not utf-8 text (byte 46 of the file)"),
    ],
)
def test_bad_files_are_named_with_line_and_field(config, tmp_path, text, message):
    path = _file(tmp_path, text)
    with pytest.raises(DataFileError) as excinfo:
        check_interaction_file(path, config)
    assert str(excinfo.value).startswith(path) and message in str(excinfo.value)


def test_good_files_pass_with_blank_lines_and_crlf(config, tmp_path):
    assert check_interaction_file(_file(tmp_path, HEADER + GOOD + "\n"), config) == 3
    assert check_interaction_file(_file(tmp_path, (HEADER + GOOD).replace("\n", "\r\n")), config) == 3
    # A column not loaded (load_col) may be empty: RecBole never reads it.
    text = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n1\t10\t\t1\n"
    assert check_interaction_file(_file(tmp_path, text), config) == 1


def test_recboles_load_all_columns_and_empty_sequences_pass(tiny_config, tmp_path):
    config = Config(model="SASRec", dataset="tiny", config_dict={**tiny_config, "load_col": {"inter": "*"}})
    text = "user_id:token\titem_id:token\ttimestamp:float\ttags:token_seq\n1\t10\t1\t\n1\t11\t2\ta b\n"
    assert check_interaction_file(_file(tmp_path, text), config) == 2
    with pytest.raises(DataFileError, match=":2: no value for 'item_id'"):
        check_interaction_file(_file(tmp_path, "user_id:token\titem_id:token\ttimestamp:float\n1\t\t1\n"), config)


def test_the_bundled_ml_100k_passes():
    config = Config(model="FAME", dataset="ml-100k")
    assert check_interaction_file(os.path.join(config["data_path"], "ml-100k.inter"), config) == 100000


def test_a_row_without_its_timestamp_stops_the_run_before_training(tiny_config, tiny_data):
    path = os.path.join(tiny_data, "tiny", "tiny.inter")
    with open(path) as f:
        lines = f.readlines()
    user, item, _ = lines[5].rstrip("\n").split("\t")
    lines[5] = f"{user}\t{item}\n"
    with open(path, "w") as f:
        f.writelines(lines)
    with pytest.raises(DataFileError, match=rf"{path}:6: 2 fields, but the header has 3 \(no value for 'timestamp'\)"):
        prepare_data(Config(model="SASRec", dataset="tiny", config_dict=tiny_config))
    with pytest.raises(DataFileError, match=rf"{path}:6"):
        run(model="FAME", dataset="tiny", config_dict=tiny_config)
    assert not os.path.exists(tiny_config["checkpoint_dir"])
