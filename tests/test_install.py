"""The defaults in properties/ and the paper's table reach a user who installs the built wheel,
from another directory."""

import json
import os
import subprocess
import sys
import zipfile

from helpers import REPO


def test_wheel_ships_properties_and_finds_them(tmp_path):
    wheel_dir = tmp_path / "wheel"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", REPO, "--no-deps", "--no-build-isolation",
         "-w", str(wheel_dir), "-q"],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = wheel_dir.glob("recbole_fame-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for bundled in ("overall.yaml", "fame.yaml", "model/FAME.yaml", "dataset/beauty.yaml",
                    "hyper/fame.hyper"):
        assert f"recbole_fame/properties/{bundled}" in names
    assert "recbole_fame/experiment/fame_paper_table2.csv" in names

    site = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(site), str(wheel), "-q"],
        capture_output=True,
        text=True,
    )
    assert install.returncode == 0, install.stderr[-2000:]

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    probe = (
        "import json, recbole_fame; from recbole.config import Config; "
        "c = Config(model=recbole_fame.FAME, dataset='ml-100k'); "
        "d = recbole_fame.Config(model='FAME', dataset='ml-20m', config_file_list=['fame.yaml']); "
        "print(json.dumps([recbole_fame.__file__, c['n_experts'], c['final_residual'], d['topk'], "
        "d['n_experts'], d['item_inter_num_interval']])); "
        "from recbole_fame.experiment.report import PAPER_TABLE, read_paper_table; "
        "print(json.dumps([PAPER_TABLE, read_paper_table(PAPER_TABLE, 'beauty')[1]['FAME']['HR@10']]))"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=elsewhere, env=env
    )
    assert out.returncode == 0, out.stderr[-2000:]
    settings, paper = out.stdout.splitlines()
    module_file, n_experts, final_residual, topk, ml20m_experts, core = json.loads(settings)
    paper_table, fame_hr10 = json.loads(paper)
    assert paper_table.startswith(str(site)) and fame_hr10 == 0.0978  # the paper's Table 2
    assert module_file.startswith(str(site))
    assert (n_experts, final_residual) == (4, "projection")  # properties/model/FAME.yaml
    assert topk == [5, 10, 20]  # properties/overall.yaml
    assert ml20m_experts == 32  # properties/dataset/ml-20m.yaml
    assert core == "[5,inf)"  # properties/fame.yaml
