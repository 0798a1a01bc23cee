"""mriganx: unpaired T1w <-> T2w brain MRI translation with a CycleGAN.

The library is usable from Python; the ``mriganx`` command is a thin face over it.

>>> import mriganx
>>> isinstance(mriganx.__version__, str)
True
"""

__version__ = "0.1.0"
