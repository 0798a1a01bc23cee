"""Once freed memory is retained, training passes reuse it without page faults; the opt-out restores glibc's default."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

# Forward and backward passes of a small generator; the page faults per pass once warm. By default glibc hands
# the freed activations back to the kernel (at 128x128 it trims them off the heap top), so every pass faults them in
# again.
_PROBE = """
import json, resource, torch
from mriganx.config import Direction, load_config
from mriganx.memory import retain_freed_memory
from mriganx.networks import build_generator
retained = retain_freed_memory()
torch.manual_seed(0)
generator = build_generator(load_config("cpu").model, Direction.T1_TO_T2)
x = torch.rand(2, 1, 128, 128)
for step in range(6):
    if step == 2:
        start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    generator(x).square().mean().backward()
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start
print(json.dumps({"retained": retained, "faults_per_pass": faults / 4}))
"""


def _probe(release: bool) -> dict[str, object]:
    env = dict(os.environ, MRIGANX_RELEASE_MEMORY="1" if release else "0")
    out = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator settings exist on Linux only")
def test_retained_memory_is_reused_without_page_faults() -> None:
    default, retained = _probe(release=True), _probe(release=False)
    assert default["retained"] is False and retained["retained"] is True
    assert default["faults_per_pass"] > 1000  # some 30 MiB of activations faulted in again
    assert retained["faults_per_pass"] < default["faults_per_pass"] / 20
