"""Converters of datasets with item text: benchmark splits, json pairs, and the pre-training merge."""

import json
import os

import pytest

from helpers import SHARED_DATASETS, make_data

from recbole_fame import Config
from recbole_fame.data.converters import ConversionError
from recbole_fame.data.text_datasets import convert_text_dataset, merge_datasets, read_atomic

HISTORIES = {"0": ["0", "1", "2", "3", "4", "5"], "1": ["2", "3", "1", "4", "0"]}
ASINS = {"0": "B00A", "1": "B00B", "2": "B00C", "3": "B00D", "4": "B00E", "5": "B00F"}


def write_benchmark(folder, histories=HISTORIES, cap=3, texts=None):
    """Benchmark files as UniSRec writes them: every prefix, lists capped at ``cap`` items."""
    os.makedirs(folder, exist_ok=True)
    header = "user_id:token\titem_id_list:token_seq\titem_id:token\n"
    splits = {"train": [], "valid": [], "test": []}
    for user, items in histories.items():
        rows = [(user, items[max(0, k - cap):k], items[k]) for k in range(1, len(items))]
        splits["test"].append(rows[-1])
        splits["valid"].append(rows[-2])
        splits["train"].extend(rows[:-2][::-1])  # the longest prefix first
    for split, rows in splits.items():
        with open(os.path.join(folder, f"S.{split}.inter"), "w") as f:
            f.write(header + "".join(f"{u}\t{' '.join(h)}\t{t}\n" for u, h, t in rows))
    with open(os.path.join(folder, "S.item2index"), "w") as f:
        f.write("".join(f"{asin}\t{index}\n" for index, asin in ASINS.items()))
    with open(os.path.join(folder, "S.user2index"), "w") as f:
        f.write("".join(f"A{user}\t{user}\n" for user in histories))
    texts = texts if texts is not None else {asin: f"Title {asin}. Cat A Cat B. Brand{asin[-1]}. " for asin in ASINS.values()}
    with open(os.path.join(folder, "S.text"), "w") as f:
        f.write("item_id:token\ttext:token_seq\n" + "".join(f"{a}\t{t}\n" for a, t in texts.items()))
    return folder


def test_benchmark_split_is_rebuilt_beyond_the_cap(tmp_path):
    source = write_benchmark(str(tmp_path / "raw"))
    convert_text_dataset("benchmark", source, str(tmp_path / "out"), "S")
    inter = read_atomic(str(tmp_path / "out" / "S" / "S.inter"), ["user_id", "item_id", "timestamp"])
    rebuilt = {}
    for user, item in zip(inter["user_id"], inter["item_id"]):
        rebuilt.setdefault(user, []).append(item)
    assert rebuilt == {f"A{u}": [ASINS[i] for i in items] for u, items in HISTORIES.items()}
    assert inter["timestamp"][:3] == ["1", "2", "3"]
    item = read_atomic(str(tmp_path / "out" / "S" / "S.item"), ["item_id", "text", "title", "categories", "brand"])
    assert item["item_id"][0] == "B00A" and item["text"][0] == "Title B00A. Cat A Cat B. BrandA."
    assert (item["title"][0], item["categories"][0], item["brand"][0]) == ("Title B00A", "Cat A Cat B", "BrandA")


def test_benchmark_rows_that_contradict_each_other_are_named(tmp_path):
    source = write_benchmark(str(tmp_path / "raw"))
    path = os.path.join(source, "S.valid.inter")
    with open(path) as f:
        lines = f.readlines()
    lines[1] = "0\t2 9 4\t4\n"  # user 0's validation history is not its train history's end
    with open(path, "w") as f:
        f.writelines(lines)
    with pytest.raises(ConversionError, match=r"S.valid.inter:2: user 0's history '2 9 4' is not the end"):
        convert_text_dataset("benchmark", source, str(tmp_path / "out"), "S")
    assert not os.path.exists(tmp_path / "out" / "S" / "S.inter")


def test_benchmark_items_without_text_are_refused(tmp_path):
    texts = {asin: "t" for asin in list(ASINS.values())[:-1]}
    source = write_benchmark(str(tmp_path / "raw"), texts=texts)
    with pytest.raises(ConversionError, match=r"S.text has no text for 1 of the 6 items .*'B00F'.*do not match"):
        convert_text_dataset("benchmark", source, str(tmp_path / "out"), "S")


def write_json_pair(folder, sequences, items):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "O.inter.json"), "w") as f:
        json.dump(sequences, f)
    with open(os.path.join(folder, "O.item.json"), "w") as f:
        json.dump(items, f)
    return folder


def test_json_pair_and_its_errors(tmp_path):
    items = {str(i): {"title": f"T{i}", "description": "long\ttext", "brand": "B", "categories": "X, Y"} for i in range(4)}
    source = write_json_pair(str(tmp_path / "raw"), {"0": [0, 1, 2], "1": [3, 2, 1, 0]}, items)
    path, count, n_items = convert_text_dataset("json", source, str(tmp_path / "out"), "O")
    assert (count, n_items) == (7, 4)
    item = read_atomic(str(tmp_path / "out" / "O" / "O.item"), ["item_id", "text"])
    assert item["text"][0] == "T0. X, Y. B."
    with pytest.raises(ConversionError, match="exists: add --overwrite"):
        convert_text_dataset("json", source, str(tmp_path / "out"), "O")

    del items["3"]
    source = write_json_pair(str(tmp_path / "raw2"), {"0": [0, 1, 2], "1": [3, 2]}, items)
    with pytest.raises(ConversionError, match=r"O.item.json has no entry for 1 of the 4 items .*'3'"):
        convert_text_dataset("json", source, str(tmp_path / "out"), "O2")
    with open(os.path.join(source, "O.inter.json"), "w") as f:
        f.write('{"0": [0, 1,\n')
    with pytest.raises(ConversionError, match=r"O.inter.json:2: not valid json"):
        convert_text_dataset("json", source, str(tmp_path / "out"), "O2")


def test_merge_prefixes_ids_and_joins_text(tmp_path):
    out = str(tmp_path / "out")
    convert_text_dataset("benchmark", write_benchmark(str(tmp_path / "raw")), out, "S")
    items = {str(i): {"title": f"T{i}", "brand": "", "categories": ""} for i in range(3)}
    convert_text_dataset("json", write_json_pair(str(tmp_path / "raw2"), {"0": [0, 1, 2]}, items), out, "O")
    merge_datasets([("S", os.path.join(out, "S"), ["text"]), ("O", os.path.join(out, "O"), ["title", "brand"])],
                   out, "both")
    inter = read_atomic(os.path.join(out, "both", "both.inter"), ["user_id", "item_id"])
    assert inter["user_id"][0] == "S/A0" and inter["item_id"][0] == "S/B00A" and inter["item_id"][-1] == "O/2"
    item = read_atomic(os.path.join(out, "both", "both.item"), ["item_id", "text"])
    texts = dict(zip(item["item_id"], item["text"]))
    assert texts["S/B00A"] == "Title B00A. Cat A Cat B. BrandA." and texts["O/0"] == "title: T0"
    with pytest.raises(ConversionError, match=r"no column \['genre'\]"):
        merge_datasets([("O", os.path.join(out, "O"), ["genre"])], out, "bad")


@pytest.mark.skipif(not os.path.isdir(os.path.join(SHARED_DATASETS, "Scientific")),
                    reason="../shared/datasets/Scientific is not here (a user's clone has no shared data)")
def test_scientific_leave_one_out_gives_the_published_split_back(tmp_path):
    source = os.path.join(SHARED_DATASETS, "Scientific")
    path, count, n_items = convert_text_dataset("benchmark", source, str(tmp_path), "Scientific")
    assert (count, n_items) == (59427, 4385)
    config = Config(model="SASRec", dataset="Scientific", config_dict={
        "data_path": str(tmp_path), "MAX_ITEM_LIST_LENGTH": 50, "state": "WARNING"})
    _, _, valid_data, test_data = make_data(config)
    users = {}
    with open(os.path.join(source, "Scientific.user2index")) as f:
        for line in f:
            raw, index = line.split()
            users[index] = raw
    items = {}
    with open(os.path.join(source, "Scientific.item2index")) as f:
        for line in f:
            raw, index = line.split()
            items[index] = raw
    for data, split in ((valid_data, "valid"), (test_data, "test")):
        dataset = data._dataset
        published = {}
        with open(os.path.join(source, f"Scientific.{split}.inter")) as f:
            next(f)
            for line in f:
                user, history, target = line.rstrip("\n").split("\t")
                published[users[user]] = ([items[i] for i in history.split()], items[target])
        ours = {}
        for batch in data:
            batch = batch[0]
            for row in range(len(batch)):
                user = dataset.id2token(dataset.uid_field, int(batch[dataset.uid_field][row]))
                length = int(batch[dataset.item_list_length_field][row])
                history = dataset.id2token(dataset.iid_field, batch[dataset.item_id_list_field][row][:length])
                ours[user] = (list(history), dataset.id2token(dataset.iid_field, int(batch[dataset.iid_field][row])))
        assert ours == published
