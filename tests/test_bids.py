"""BIDS in and out (mriganx.bids): a small BIDS tree of phantoms becomes a derivative dataset that pybids reads,
with BIDS names, sidecars, skip-on-rerun, and a one-line refusal of a file whose image contradicts its suffix."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mriganx.bids import check_suffix, convert_bids, dataset_root, derivative_stem, parse_name
from mriganx.cli import app
from mriganx.config import Direction
from mriganx.errors import MriganxError
from mriganx.io import Image, ImageKind, is_nifti_name
from mriganx.synthetic import make_phantom
from tests.helpers import SMALL_SHAPE, SMALL_SPACING, assert_one_line_error, write_nifti

runner = CliRunner()

# Source (relative to the root) -> (phantom seed, contrast written, the derivative's path relative to its root).
# Two subjects, the second with two sessions; one with an acq entity, to see the entity order kept.
TREE = {
    "sub-01/anat/sub-01_T1w.nii.gz": (1, "t1", "sub-01/anat/sub-01_desc-mriganx_T2w.nii.gz"),
    "sub-01/anat/sub-01_T2w.nii.gz": (1, "t2", "sub-01/anat/sub-01_desc-mriganx_T1w.nii.gz"),
    "sub-02/ses-1/anat/sub-02_ses-1_acq-mprage_T1w.nii.gz":
        (2, "t1", "sub-02/ses-1/anat/sub-02_ses-1_acq-mprage_desc-mriganx_T2w.nii.gz"),
    "sub-02/ses-2/anat/sub-02_ses-2_T2w.nii.gz": (3, "t2", "sub-02/ses-2/anat/sub-02_ses-2_desc-mriganx_T1w.nii.gz"),
}


def build_tree(root: Path, files: dict[str, tuple[int, str, str]] = TREE, description: bool = True) -> Path:
    """A BIDS dataset of 4 mm phantoms (detect_contrast reads them right on this grid: checked by the notes below)."""
    for relative, (seed, contrast, _) in files.items():
        phantom = make_phantom(seed=seed, shape=SMALL_SHAPE, spacing=SMALL_SPACING)
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        write_nifti(root / relative, getattr(phantom, contrast), phantom.affine)
    if (root / "sub-01" / "anat").is_dir():
        (root / "sub-01" / "anat" / "sub-01_T1w.json").write_text('{"RepetitionTime": 2.3}\n')  # a raw sidecar
    if description:
        (root / "dataset_description.json").write_text(json.dumps({"Name": "tiny", "BIDSVersion": "1.9.0"}))
    return root


def raw_files(root: Path) -> dict[str, int]:
    """Every file of the raw dataset outside derivatives/, with its modification time in ns."""
    return {p.relative_to(root).as_posix(): p.stat().st_mtime_ns for p in root.rglob("*")
            if p.is_file() and "derivatives" not in p.relative_to(root).parts}


def test_cli_converts_a_dataset_into_a_derivative_pybids_reads(tmp_path: Path, smoke_model: Path) -> None:
    bids = pytest.importorskip("bids")
    root = build_tree(tmp_path / "ds")
    before = raw_files(root)
    result = runner.invoke(app, ["convert", str(root), "--model", str(smoke_model), "--confidence", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert raw_files(root) == before  # nothing written, replaced or touched in the raw dataset
    out = root / "derivatives" / "mriganx"
    for relative, (_, contrast, target) in TREE.items():
        name = Path(relative).name
        assert f"{name}: {contrast.upper()}w by its BIDS suffix, and the image agrees" in result.stderr
        assert (out / target).is_file() and str(out / target) in result.stdout
    description = json.loads((out / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative" and description["DatasetLinks"] == {"raw": "../.."}
    assert description["GeneratedBy"][0]["Name"] == "mriganx" and description["Name"] == "mriganx translations of tiny"

    # validate=True: the raw tree is valid BIDS, and derivatives are indexed without validation by pybids anyway.
    layout = bids.BIDSLayout(root, derivatives=True)
    found = layout.get(scope="mriganx", desc="mriganx", extension=[".nii.gz"])
    assert sorted(f.path for f in found) == sorted(str(out / target) for _, _, target in TREE.values())
    entities = {(f.entities["subject"], f.entities.get("session"), f.entities["suffix"]) for f in found}
    assert entities == {("01", None, "T2w"), ("01", None, "T1w"), ("02", "1", "T2w"), ("02", "2", "T1w")}
    mprage = layout.get(scope="mriganx", subject="02", session="1", acquisition="mprage", desc="mriganx",
                        suffix="T2w", extension=".nii.gz")
    assert len(mprage) == 1
    maps = layout.get(scope="mriganx", desc="mriganxConfidence", extension=".nii.gz")
    assert len(maps) == len(TREE)
    # pybids pairs each image with its sidecar: the metadata of the translation.
    metadata = mprage[0].get_metadata()
    assert metadata["Sources"] == ["bids:raw:sub-02/ses-1/anat/sub-02_ses-1_acq-mprage_T1w.nii.gz"]
    assert metadata["ConfidenceMap"] == "sub-02_ses-1_acq-mprage_desc-mriganxConfidence_T2w.nii.gz"


def test_sidecars_and_rerun_through_the_library_without_pybids(tmp_path: Path, smoke_model: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from mriganx.modelfile import ModelFile

    monkeypatch.setitem(sys.modules, "bids", None)  # any `import bids` fails: the core must not need pybids
    files = {k: v for k, v in TREE.items() if k.startswith("sub-01")}
    root = build_tree(tmp_path / "ds", files, description=False)  # no description: forced, as --bids does
    out = tmp_path / "elsewhere" / "mriganx"
    report = convert_bids(root, smoke_model, output=out, device="cpu", progress=False)
    assert not report.failed and not report.skipped
    target = out / "sub-01" / "anat" / "sub-01_desc-mriganx_T2w.nii.gz"
    card = json.loads((out / "sub-01" / "anat" / "sub-01_desc-mriganx_T2w.json").read_text())
    model = ModelFile.load(smoke_model)
    assert card["Sources"] == ["bids:raw:sub-01/anat/sub-01_T1w.nii.gz"]
    assert card["Direction"] == "t1-to-t2" and card["MriganxVersion"] == __import__("mriganx").__version__
    assert card["Model"] == {"Name": str(model.provenance.get("name") or smoke_model.name),
                             "WeightsSHA256": model.weights_sha256()}
    assert "the image agrees" in card["ContrastCheck"] and "ConfidenceMap" not in card
    assert "Synthetic T2w" in card["Description"]
    link = json.loads((out / "dataset_description.json").read_text())["DatasetLinks"]["raw"]
    assert (out / link).resolve() == root.resolve()  # bids:raw: resolves to the raw dataset
    assert sorted(report.written) == sorted([target, target.with_name("sub-01_desc-mriganx_T2w.json"),
                                             out / "sub-01/anat/sub-01_desc-mriganx_T1w.nii.gz",
                                             out / "sub-01/anat/sub-01_desc-mriganx_T1w.json"])

    stamp = target.stat().st_mtime_ns
    again = convert_bids(root, smoke_model, output=out, device="cpu", progress=False)
    assert not again.written and sorted(again.skipped) == sorted(p for p in report.written if is_nifti_name(p))
    assert target.stat().st_mtime_ns == stamp
    replaced = convert_bids(root, smoke_model, output=out, device="cpu", progress=False, overwrite=True)
    assert len(replaced.written) == 4 and not replaced.skipped
    assert target.stat().st_mtime_ns != stamp


def test_cli_rerun_says_skipped_and_overwrite_replaces(tmp_path: Path, smoke_model: Path) -> None:
    files = {k: v for k, v in TREE.items() if k.startswith("sub-02/ses-2")}
    root = build_tree(tmp_path / "ds", files)
    args = ["convert", str(root), "--model", str(smoke_model), "--device", "cpu"]
    assert runner.invoke(app, args).exit_code == 0
    target = root / "derivatives" / "mriganx" / files["sub-02/ses-2/anat/sub-02_ses-2_T2w.nii.gz"][2]
    stamp = target.stat().st_mtime_ns
    result = runner.invoke(app, args)
    assert result.exit_code == 0 and f"skipped (exists): {target}" in result.stderr and result.stdout == ""
    assert target.stat().st_mtime_ns == stamp
    result = runner.invoke(app, [*args, "--overwrite"])
    assert result.exit_code == 0 and str(target) in result.stdout and target.stat().st_mtime_ns != stamp
    result = runner.invoke(app, [*args, "--direction", "t1-to-t2"])  # only T1w images: this dataset has none
    assert result.exit_code == 2 and "with the BIDS suffix T1w" in result.stderr


def test_a_mislabelled_file_is_refused_in_one_line_and_the_rest_converted(tmp_path: Path, smoke_model: Path) -> None:
    files = {
        "sub-01/anat/sub-01_T1w.nii.gz": TREE["sub-01/anat/sub-01_T1w.nii.gz"],
        "sub-03/anat/sub-03_T1w.nii.gz": (4, "t2", "sub-03/anat/sub-03_desc-mriganx_T2w.nii.gz"),  # a T2w image
    }
    root = build_tree(tmp_path / "ds", files)
    result = runner.invoke(app, ["convert", str(root), "--model", str(smoke_model), "--device", "cpu"])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    assert str(root / "sub-03/anat/sub-03_T1w.nii.gz") in errors[0]
    assert "BIDS suffix says T1w but the image looks T2w" in errors[0]
    out = root / "derivatives" / "mriganx"
    assert (out / "sub-01/anat/sub-01_desc-mriganx_T2w.nii.gz").is_file()
    assert not (out / "sub-03").exists()


def test_weak_evidence_lets_the_suffix_decide_and_says_so() -> None:
    noise = np.random.default_rng(0).normal(100.0, 1.0, SMALL_SHAPE).astype(np.float32)  # no head to read
    image = Image(noise, np.diag([4.0, 4.0, 4.0, 1.0]), ImageKind.NIFTI, Path("sub-01_T2w.nii.gz"))
    note = check_suffix(image, "T2w")
    assert note.startswith("T2w by its BIDS suffix; the image cannot confirm it (") and note.endswith("-> t2-to-t1")


def test_names_keep_every_entity_in_bids_order() -> None:
    assert derivative_stem("sub-01_run-2_acq-fast_ses-a_T1w.nii", Direction.T1_TO_T2) == \
        "sub-01_ses-a_acq-fast_run-2_desc-mriganx_T2w"
    # A source's own desc stays in front, so two sources differing only by desc never share an output name.
    assert derivative_stem("sub-01_desc-preproc_T1w", Direction.T1_TO_T2) == "sub-01_desc-preprocMriganx_T2w"
    assert derivative_stem("sub-01_T1w", Direction.T1_TO_T2, confidence=True) == "sub-01_desc-mriganxConfidence_T2w"
    assert parse_name("sub-01_space-MNI152NLin2009cAsym_T2w.nii.gz") == ({"sub": "01", "space": "MNI152NLin2009cAsym"},
                                                                           "T2w")
    with pytest.raises(MriganxError, match="not a BIDS file name"):
        parse_name("sub-01_mprage-T1w_x_T1w.nii.gz")


def test_which_inputs_are_datasets_and_where_outputs_may_go(tmp_path: Path, smoke_model: Path) -> None:
    root = tmp_path / "ds"
    (root / "sub-01").mkdir(parents=True)
    plain = tmp_path / "plain"
    plain.mkdir()
    assert dataset_root([plain]) is None and dataset_root([plain], bids=True) == plain
    (root / "dataset_description.json").write_text("{}")
    assert dataset_root([root]) == root and dataset_root([root], bids=False) is None
    with pytest.raises(MriganxError, match="converted on its own"):
        dataset_root([root, plain])
    for inside in (root / "sub-01", root, root / "derivatives"):
        with pytest.raises(MriganxError, match="inside the raw dataset"):
            convert_bids(root, smoke_model, output=inside, device="cpu", progress=False)
    with pytest.raises(MriganxError, match="holds no sub-"):
        convert_bids(root, smoke_model, device="cpu", progress=False)
    with pytest.raises(MriganxError, match="--workers"):
        convert_bids(root, smoke_model, device="cpu", progress=False, workers=2)
    assert not (root / "derivatives").exists()


def test_a_file_inside_a_dataset_is_not_translated_beside_itself(tmp_path: Path, smoke_model: Path) -> None:
    """`mriganx convert ds/sub-01/anat/sub-01_T1w.nii.gz` would put a non-BIDS file into the raw dataset: refused in
    one line that names the way (convert the dataset, or -o); -o and --no-bids still work, and derivatives are free."""
    from tests.helpers import assert_one_line_error

    root = build_tree(tmp_path / "ds", {k: v for k, v in TREE.items() if k.startswith("sub-01/anat/sub-01_T1w")})
    scan = root / "sub-01" / "anat" / "sub-01_T1w.nii.gz"
    before = raw_files(root)
    common = ["--model", str(smoke_model), "--device", "cpu", "--direction", "t1-to-t2"]
    for target in (scan, scan.parent):
        assert_one_line_error(runner.invoke(app, ["convert", str(target), *common]), "inside the BIDS dataset",
                              f"mriganx convert {root}")
    assert raw_files(root) == before
    assert runner.invoke(app, ["convert", str(scan), *common, "-o", str(tmp_path / "out")]).exit_code == 0
    assert runner.invoke(app, ["convert", str(scan), *common, "--no-bids", "-o", str(tmp_path / "out2")]).exit_code == 0
    derived = build_tree(tmp_path / "ds" / "derivatives" / "other", {"sub-01/anat/sub-01_T1w.nii.gz": TREE[
        "sub-01/anat/sub-01_T1w.nii.gz"]}, description=False)
    (derived / "dataset_description.json").write_text(json.dumps({"Name": "x", "DatasetType": "derivative"}))
    assert runner.invoke(app, ["convert", str(derived / "sub-01" / "anat" / "sub-01_T1w.nii.gz"), *common]).exit_code == 0


def test_a_rerun_restores_a_deleted_sidecar(tmp_path: Path, smoke_model: Path) -> None:
    """Issue 24, item 8: a rerun used to skip a scan whose translation exists and never rewrote its deleted
    sidecar; now a scan with part of its outputs missing is written again whole (image and sidecar agree)."""
    files = {k: v for k, v in TREE.items() if k.startswith("sub-02/ses-2")}
    root = build_tree(tmp_path / "ds", files)
    args = ["convert", str(root), "--model", str(smoke_model), "--device", "cpu"]
    assert runner.invoke(app, args).exit_code == 0
    target = root / "derivatives" / "mriganx" / files["sub-02/ses-2/anat/sub-02_ses-2_T2w.nii.gz"][2]
    card = target.parent / target.name.replace(".nii.gz", ".json")
    expected = json.loads(card.read_text())
    card.unlink()
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads(card.read_text()) == expected and "written again whole" in result.stderr
    target.unlink()  # the image gone, its sidecar left: the same
    assert runner.invoke(app, args).exit_code == 0 and target.is_file()
    card.write_text('{"Description": "the user\'s own notes"}')  # not mriganx's sidecar: never replaced
    target.unlink()
    result = runner.invoke(app, [*args, "--overwrite"])
    assert result.exit_code == 2 and "not an output mriganx wrote" in result.stderr
    assert "the user's own notes" in card.read_text() and not target.exists()


def test_a_bids_layout_without_a_description_is_not_polluted(tmp_path: Path, smoke_model: Path) -> None:
    """Issue 24, item 8: a folder laid out as BIDS but without dataset_description.json used to get `_t2` files in
    its anat/ folders. It is refused in one line; --bids makes it a dataset (derivatives/mriganx), -o or --no-bids
    write where asked."""
    root = build_tree(tmp_path / "ds", {k: v for k, v in TREE.items() if k.startswith("sub-01")}, description=False)
    before = raw_files(root)
    common = ["--model", str(smoke_model), "--device", "cpu"]
    for target in (root, root / "sub-01", root / "sub-01" / "anat" / "sub-01_T1w.nii.gz"):
        result = runner.invoke(app, ["convert", str(target), *common])
        assert_one_line_error(result, "BIDS layout", "without dataset_description.json", "--bids", "--no-bids")
    assert raw_files(root) == before
    result = runner.invoke(app, ["convert", str(root), "--bids", *common])
    assert result.exit_code == 0, result.output
    assert raw_files(root) == before and (root / "derivatives" / "mriganx" / "sub-01" / "anat").is_dir()
    result = runner.invoke(app, ["convert", str(root / "sub-01"), *common, "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert raw_files(root) == before and len(list((tmp_path / "out").glob("*.nii.gz"))) == 2
