"""Model files that ship inside the package (package data, present after ``pip install``): ``default.pt``, the model
``mriganx convert`` uses when no ``--model`` is given. Its card: ``mriganx models``, or ``docs/model-card.md``."""
