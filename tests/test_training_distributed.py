"""The multi-device path: MirroredStrategy over two logical CPU devices, in a fresh process.

Logical devices must be configured before TensorFlow initialises its runtime, so the
training runs in a subprocess that splits the CPU into two devices first.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
from pneumo_lib._tf import tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from _synthetic import dataset, separable_arrays
from pneumo_lib import training
x, y = separable_arrays(64, size=32, seed=0)
xv, yv = separable_arrays(32, size=32, seed=1)
auto = training.pick_strategy("auto")
result = training.train("paper_cnn", dataset(x, y), dataset(xv, yv), image_size=32, epochs=4,
                        learning_rate=3e-3, strategy="mirrored", verbose=0, seed=3)
kernel = result.model.get_layer("block1_conv").kernel
print(json.dumps({
    "gpus": len(tf.config.list_logical_devices("GPU")),
    "auto": type(auto).__name__,
    "strategy": result.strategy,
    "replicas": result.replicas,
    "variable": type(kernel.value).__name__,
    "best_val_auc": result.best_val_auc,
}))
"""


def test_mirrored_strategy_over_two_cpu_devices_trains_a_model():
    tests_dir = str(Path(__file__).parent)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run([sys.executable, "-c", SCRIPT, tests_dir], capture_output=True, text=True,
                         env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    # Two CPU devices alone never make "auto" distribute; several GPUs do.
    assert report["auto"] == ("MirroredStrategy" if report["gpus"] > 1 else "_DefaultDistributionStrategy")
    assert report["strategy"] == "MirroredStrategy"
    # "mirrored" runs over the GPUs when there are any, else over the two CPU devices.
    assert report["replicas"] == (report["gpus"] or 2)
    assert "Mirrored" in report["variable"]
    assert report["best_val_auc"] >= 0.99
