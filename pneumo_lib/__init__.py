"""pneumo_lib: the library behind the explainable pneumonia-detection book.

The book's chapters are short because the work lives here: data sources and the
input pipeline, model builders, training and evaluation, and the CAM methods that
explain each prediction. Importing the package is cheap: TensorFlow is imported
only by the modules that need it.
"""

from __future__ import annotations

import os as _os

__version__ = "0.1.0"

#: Where the book and the library are published: :data:`pneumo_lib.project.REPOSITORY`, the
#: one place that defines it (with :data:`pneumo_lib.project.REF`, the git ref the Colab
#: setup cells install).
from pneumo_lib.project import REPOSITORY as REPOSITORY_URL  # noqa: E402  (needs __version__)

# TensorFlow's C++ logging floods notebook outputs; silence it before any TF import.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

__all__ = ["__version__", "REPOSITORY_URL"]
