from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from pneumo_lib import runtime


def _stderr_of(code: str) -> str:
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stderr


def test_quiet_import_keeps_tensorflow_start_up_lines_out_of_stderr():
    quiet = _stderr_of("from pneumo_lib.runtime import quiet_tensorflow; quiet_tensorflow(); import tensorflow")
    assert quiet == ""


def test_quiet_import_still_raises_import_errors(monkeypatch):
    monkeypatch.delitem(sys.modules, "tensorflow", raising=False)
    monkeypatch.setitem(sys.modules, "keras", None)  # makes `import keras` raise ImportError
    with pytest.raises(ImportError):
        runtime.quiet_tensorflow()


def test_seeding_makes_numpy_and_keras_repeat():
    import keras

    runtime.seed_everything(7)
    a = (np.random.rand(3), keras.ops.convert_to_numpy(keras.random.normal((4,))))
    runtime.seed_everything(7)
    b = (np.random.rand(3), keras.ops.convert_to_numpy(keras.random.normal((4,))))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_negative_seed_is_refused():
    with pytest.raises(ValueError, match="non-negative"):
        runtime.seed_everything(-1)


def test_versions_name_the_library_and_tensorflow():
    v = runtime.versions()
    assert v["pneumo_lib"] and v["tensorflow"] != "not installed"
