"""Property tests over random shapes, orientations, affines, dtypes and intensity ranges: the path reader ->
slice frame -> inverse -> writer always keeps geometry and data, and fails only with clear errors."""

from __future__ import annotations

import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nibabel.orientations import apply_orientation, axcodes2ornt, inv_ornt_aff, ornt_transform

from mriganx.errors import MriganxError
from mriganx.frame import from_slices, to_slices
from mriganx.io import load_image, save_like

AXCODES = ["RAS", "LPS", "LAS", "PIR", "ASL", "SRA", "ILP", "RPI"]
DTYPES = [np.uint8, np.int16, np.float32, np.float64]


def rotation(angles: tuple[float, float, float]) -> np.ndarray:
    out = np.eye(3)
    for axis, angle in enumerate(np.deg2rad(angles)):
        c, s = np.cos(angle), np.sin(angle)
        i, j = [k for k in range(3) if k != axis]
        r = np.eye(3)
        r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
        out = out @ r
    return out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    shape=st.tuples(st.integers(1, 9), st.integers(1, 9), st.integers(1, 9)),
    axcodes=st.sampled_from(AXCODES),
    angles=st.tuples(*[st.floats(-40, 40)] * 3),
    spacing=st.tuples(*[st.floats(0.2, 6.0)] * 3),
    offset=st.tuples(*[st.floats(-300, 300)] * 3),
    dtype=st.sampled_from(DTYPES),
    scale=st.floats(1e-3, 1e4),
    codes=st.sampled_from([(1, 1), (0, 4), (1, 2), (2, 0)]),
)
def test_reader_frame_writer_keep_geometry(shape, axcodes, angles, spacing, offset, dtype, scale, codes) -> None:
    rng = np.random.default_rng(0)
    ras = (rng.random(shape) * scale).astype(dtype)
    transform = ornt_transform(axcodes2ornt("RAS"), axcodes2ornt(tuple(axcodes)))
    data = apply_orientation(ras, transform)
    affine = np.eye(4)
    affine[:3, :3] = rotation(angles) @ np.diag(spacing)
    affine[:3, 3] = offset
    affine = affine @ inv_ornt_aff(transform, ras.shape)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "in.nii.gz"
        image = nib.Nifti1Image(data, affine)
        image.set_qform(affine if codes[0] else None, code=codes[0])
        image.set_sform(affine if codes[1] else None, code=codes[1])
        nib.save(image, path)
        written = nib.load(path)
        try:
            loaded = load_image(path)
        except MriganxError as error:  # the only acceptable failure: a clear, named one
            assert str(path) in str(error)
            return
        slices = to_slices(loaded.array, loaded.affine)
        back = from_slices(slices, loaded.affine)
        np.testing.assert_array_equal(back, loaded.array)
        out = save_like(back, loaded, Path(tmp) / "out.nii.gz")
        again = nib.load(out)
        assert again.shape == written.shape
        np.testing.assert_allclose(again.affine, written.affine, atol=1e-6)
        assert (int(again.header["qform_code"]), int(again.header["sform_code"])) == codes
        np.testing.assert_allclose(again.get_fdata(), np.asarray(written.dataobj, dtype=np.float64), rtol=1e-6)
