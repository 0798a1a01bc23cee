"""Translate a NIfTI volume with an exported ONNX generator and no mriganx: the boundary of ``mriganx.json``, by hand.

    mriganx export --format onnx -o exported
    python docs/examples/onnx_translate.py exported scan.nii.gz scan_t2.nii.gz [t1-to-t2|t2-to-t1]

Needs nibabel, numpy and onnxruntime only. It does what ``mriganx convert`` does around the network, in short: the
head mask is a plain threshold here (mriganx also fills holes and drops specks: where the air is noisy, the few noise
voxels above the threshold come out as specks here and not there), and it takes a scan whose in-plane
voxels already have the model's training size (``input.in_plane_mm``; resample others first). Written as an example
to read; ``tests/test_export.py`` runs it and compares it with ``mriganx convert``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import onnxruntime as ort
from nibabel.orientations import apply_orientation, axcodes2ornt, io_orientation, ornt_transform

FRAME = axcodes2ornt(("S", "P", "L"))  # (slice, row, column): axial slices, anterior at the top, radiological view


def translate(export_dir: Path, scan: Path, out: Path, direction: str = "t1-to-t2") -> None:
    edge = json.loads((export_dir / "mriganx.json").read_text())
    given, returned = edge["input"], edge["output"]
    image = nib.load(scan)
    to_frame = ornt_transform(io_orientation(image.affine), FRAME)
    volume = apply_orientation(np.asarray(image.dataobj, dtype=np.float32), to_frame)
    sizes = np.sqrt((image.affine[:3, :3] ** 2).sum(axis=0))
    in_plane = np.empty(3)
    in_plane[to_frame[:, 0].astype(int)] = sizes  # voxel sizes along (slice, row, column)
    if given["in_plane_mm"] and not np.allclose(in_plane[1:], given["in_plane_mm"], atol=0.01):
        sys.exit(f"{scan}: resample to {given['in_plane_mm']} mm in-plane first (or use mriganx convert)")

    # One robust range for the whole volume, then [-1, 1].
    low = np.percentile(volume, given["lower_percentile"])
    high = np.percentile(volume[volume > low], given["upper_percentile"])
    x = np.clip(2 * (volume - low) / (high - low) - 1, -1, 1).astype(np.float32)
    # Head: above 1 % of the range, or, where the air (the slices' outer rows and columns) lies at 1-10 %, above
    # twice the air level.
    border = np.concatenate([x[:, [0, -1], :].ravel(), x[:, :, [0, -1]].ravel()])
    air = (np.median(border) + 1) / 2
    head = x > -1 + 2 * (2 * air if 0.01 <= air <= 0.1 else 0.01)

    # Pad rows and columns with background to the multiple, symmetrically.
    multiple, (rows, cols) = given["height_width_multiple"], x.shape[1:]
    extra = [(-n) % multiple for n in (rows, cols)]
    pads = [(0, 0)] + [(e // 2, e - e // 2) for e in extra]
    padded = np.pad(x, pads, constant_values=-1.0)[:, None]

    session = ort.InferenceSession(str(export_dir / f"{direction}.onnx"), providers=["CPUExecutionProvider"])
    y = np.full_like(padded, -1.0)
    busy = np.flatnonzero(head.any(axis=(1, 2)))
    for start in range(0, len(busy), 8):
        index = busy[start : start + 8]
        y[index] = session.run(None, {"slices": padded[index]})[0]
    y = y[:, 0, pads[1][0] : pads[1][0] + rows, pads[2][0] : pads[2][0] + cols]

    # Background outside the head, then the target contrast's range.
    target_low, target_high = returned["intensity"][direction.split("-to-")[1]]
    y = np.where(head, np.clip(y, -1, 1), -1.0)
    values = target_low + (y + 1) / 2 * (target_high - target_low)
    back = apply_orientation(values, ornt_transform(FRAME, io_orientation(image.affine)))
    result = nib.Nifti1Image(back.astype(np.float32), image.affine, image.header)
    result.set_data_dtype(np.float32)
    nib.save(result, out)


if __name__ == "__main__":
    translate(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), *sys.argv[4:5])
