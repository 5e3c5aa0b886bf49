"""benchmarks/scale.py: the synthetic MovieLens-20M-shaped data and one measured cell, at a tiny size."""

import json
import os

import numpy as np
import pytest

from helpers import load_script

scale = load_script(os.path.join("benchmarks", "scale.py"))

TINY = 0.0015  # 208 users


def read_inter(path):
    """Header line and the (user, item, rating, timestamp) columns of a generated file."""
    with open(path, encoding="utf-8") as f:
        header = f.readline()
    rows = np.loadtxt(path, delimiter="\t", skiprows=1)
    return header, rows[:, 0].astype(np.int64), rows[:, 1].astype(np.int64), rows[:, 2], rows[:, 3].astype(np.int64)


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory):
    cache = str(tmp_path_factory.mktemp("cache"))
    stats = scale.ensure_dataset(cache, TINY, seed=7)
    return cache, stats, scale.dataset_files(cache, TINY)[1]


def test_tiny_dataset_is_a_5_core_of_increasing_histories(tiny_file):
    cache, stats, path = tiny_file
    assert path == os.path.join(cache, "ml20m-synth-0.0015", "ml20m-synth-0.0015.inter")
    header, users, items, ratings, timestamps = read_inter(path)
    assert header == "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    assert not stats["reused"]
    assert (stats["users"], stats["interactions"]) == (len(np.unique(users)), len(users))
    assert stats["items"] == len(np.unique(items))
    assert 150 <= stats["users"] <= 208 and stats["interactions"] > 208 * 20 * 0.5
    assert np.bincount(users)[np.unique(users)].min() >= 5
    assert np.bincount(items)[np.unique(items)].min() >= 5
    assert items.min() >= 1 and items.max() <= scale.ML20M_ITEMS
    # Rows grouped by user, each user's timestamps strictly increasing, no item twice per user.
    assert (np.diff(users) >= 0).all()
    same_user = np.diff(users) == 0
    assert (np.diff(timestamps)[same_user] > 0).all()
    assert len(np.unique(users * (scale.ML20M_ITEMS + 1) + items)) == len(users)
    assert set(np.unique(ratings)) <= {code / 2 for code in range(1, 11)}
    assert timestamps.min() >= scale.GENERATOR["time_start"] and timestamps.max() <= scale.GENERATOR["time_end"]
    with open(os.path.join(os.path.dirname(path), "generator.json"), encoding="utf-8") as f:
        record = json.load(f)
    assert record["params"] == scale.generator_params(TINY, 7)
    assert record["params"]["n_users"] == 208


def test_same_seed_same_bytes_and_the_file_is_reused(tiny_file, tmp_path):
    cache, _, path = tiny_file
    mtime = os.stat(path).st_mtime_ns
    again = scale.ensure_dataset(cache, TINY, seed=7)
    assert again["reused"] and os.stat(path).st_mtime_ns == mtime
    other = scale.ensure_dataset(str(tmp_path / "other"), TINY, seed=7)
    assert not other["reused"]
    with open(path, "rb") as f, open(scale.dataset_files(str(tmp_path / "other"), TINY)[1], "rb") as g:
        assert f.read() == g.read()
    # Another seed is another dataset, written over the cached one.
    changed = scale.ensure_dataset(str(tmp_path / "other"), TINY, seed=8)
    assert not changed["reused"] and changed["interactions"] != other["interactions"]


def test_users_of_a_smaller_scale_are_the_first_users_of_a_larger_one():
    small, large = (dict(scale.generator_params(TINY, 3), n_users=n) for n in (150, 300))
    cdf = scale.popularity_cdf(small)
    ids = np.arange(1, small["n_items"] + 1, dtype=np.int32)
    a = scale.generate_chunk(small, 0, cdf, ids)
    b = scale.generate_chunk(large, 0, cdf, ids)
    rows = len(a[0])
    assert a[0].max() == 150 and b[0].max() == 300 and (b[0][rows:] > 150).all()
    for column_a, column_b in zip(a, b):
        np.testing.assert_array_equal(column_a, column_b[:rows])


def test_history_lengths_have_the_mean_of_movielens_20m():
    params = scale.generator_params(1.0, 0)
    assert scale.clipped_lognormal_mean(params["mu"], 1.0, 20, 9254) == pytest.approx(144.4, abs=0.01)
    lengths = np.clip(np.rint(np.random.default_rng(0).lognormal(params["mu"], 1.0, 400_000)), 20, 9254)
    assert lengths.mean() == pytest.approx(144.4, rel=0.01)
    assert lengths.min() == 20 and np.median(lengths) < 100  # a long tail


def pairs(users, items, keep):
    return set(zip(users[keep].tolist(), items[keep].tolist()))


def test_k_core_repeats_until_stable():
    core = {(u, i) for u in range(1, 6) for i in range(1, 6)}  # users 1-5 x items 1-5
    user_6 = {(6, i) for i in (1, 2, 3, 4, 6, 7)}
    user_7 = {(7, i) for i in (1, 2, 3, 7)}  # 4 rows
    item_7 = {(u, 7) for u in (1, 2, 3, 4)}  # with users 6 and 7: 6 rows
    rows = sorted(core | user_6 | user_7 | item_7)
    users, items = (np.array(column) for column in zip(*rows))
    # One round: user 7 and item 6 (1 row) go; user 6 keeps 5 rows, item 7 keeps 5.
    assert pairs(users, items, scale.k_core(users, items, 5)) == set(rows) - user_7 - {(6, 6)}
    # Without user 1's item 7, item 7 has 4 rows once user 7 is gone, then user 6 has 4: a cascade.
    rows = sorted(set(rows) - {(1, 7)})
    users, items = (np.array(column) for column in zip(*rows))
    assert pairs(users, items, scale.k_core(users, items, 5)) == core


def test_rows_are_written_as_python_would_format_them():
    users = np.array([0, 7, 10, 138_493], dtype=np.int32)
    items = np.array([1, 100, 26_744, 9], dtype=np.int32)
    timestamps = np.array([789_652_009, 1_000_000_000, 1_427_784_002, 5], dtype=np.int32)
    ratings = np.array([1, 10, 7, 6], dtype=np.int8)
    expected = "".join(f"{u}\t{i}\t{r / 2:.1f}\t{t}\n" for u, i, r, t in zip(users, items, ratings, timestamps))
    assert scale.format_rows(users, items, timestamps, ratings) == expected.encode()


def test_a_stock_cell_is_measured_in_a_child_and_reported(tiny_file, tmp_path):
    cache, stats, _ = tiny_file
    out = str(tmp_path / "scale.md")
    scale.main(["--scales", str(TINY), "--lengths", "20", "--paths", "stock", "--models", "SASRec", "--steps", "3",
                "--warmup", "1", "--threads", "1", "--seed", "7", "--cache", cache, "--out", out, "--rss_every", "2"])
    with open(str(tmp_path / "scale.json"), encoding="utf-8") as f:
        record = json.load(f)
    (cell,) = record["cells"]
    assert cell["ok"], cell
    assert (cell["scale"], cell["length"], cell["path"], cell["device"]) == (TINY, 20, "stock", "cpu")
    assert cell["threads"] == 1
    # RecBole's augmentation: n - 1 samples per user, the last two of them validation and test.
    assert cell["train_samples"] == stats["interactions"] - 3 * stats["users"]
    assert cell["padded_rows"] is True
    assert 0 < cell["prepare_seconds"] < cell["wall_seconds"]
    assert cell["rss_after_imports_gib"] <= cell["peak_rss_prepare_gib"] <= cell["peak_rss_gib"] < 8
    sasrec = cell["models"]["SASRec"]
    assert sasrec["steps"] == 3 and sasrec["steps_per_second"] == pytest.approx(3 / sasrec["seconds"], rel=0.01)
    assert sasrec["parameters"] > 0 and sasrec["peak_rss_gib"] <= cell["peak_rss_gib"]
    # --rss_every 2 over 3 steps: before the first, after the second and after the last.
    assert [step for step, _, _ in sasrec["rss_over_steps"]] == [0, 2, 3]
    assert all(0 < in_use < gib <= sasrec["peak_rss_gib"] + 0.01 for _, gib, in_use in sasrec["rss_over_steps"])
    assert record["data"][f"{TINY:g}"]["interactions"] == stats["interactions"]
    with open(out, encoding="utf-8") as f:
        report = f.read()
    assert report.startswith("`python ")
    row = next(line for line in report.splitlines() if line.startswith(f"| {TINY:g} |") and "stock" in line)
    assert f"| {stats['interactions']:,} |" in row and "| 20 | stock |" in row
    assert f"{sasrec['steps_per_second']:.2f}" in row
    rss_line = next(line for line in report.splitlines() if line.startswith(f"- scale {TINY:g}, L=20, stock, SASRec: 0: "))
    _, last_gib, last_in_use = sasrec["rss_over_steps"][-1]
    assert rss_line.endswith(f"3: {last_gib:.2f} ({last_in_use:.2f})")
    # A later run may replace the report; a file it did not write needs --overwrite.
    other = tmp_path / "notes.md"
    other.write_text("my notes\n")
    with pytest.raises(FileExistsError):
        scale.main(["--scales", str(TINY), "--cache", cache, "--out", str(other)])


def test_cells_over_the_memory_limit_are_skipped_or_killed(tiny_file):
    cache, stats, _ = tiny_file
    args = scale.parse_args(["--scales", str(TINY), "--lengths", "20", "--paths", "stock", "compact",
                             "--models", "SASRec", "--cache", cache, "--max_gib", "0.05"])
    assert scale.estimate_stock_gib(stats["interactions"], 20) > 0.05
    # The stock cell is not started; the compact one is, and the watchdog ends it (imports alone
    # take more than 0.05 GiB).
    cells = scale.measure(args, {TINY: stats})
    stock, compact = cells
    assert stock["skipped"] and stock["error"].startswith("skipped: needs about")
    assert "wall_seconds" not in stock
    assert not compact["ok"] and compact["error"].startswith("killed at "), compact
