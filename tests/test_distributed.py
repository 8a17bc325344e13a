"""Training under tf.distribute.MirroredStrategy, on two logical CPU devices.

Logical devices must be set up before TensorFlow touches the CPU, so the run happens in a
fresh process of its own.
"""

import json
import subprocess
import sys
import textwrap


def test_mirrored_strategy_on_two_cpu_devices_trains_and_scores(tmp_path):
    script = textwrap.dedent(f"""
        import json
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
        from mmkeras.plots import read_history
        from mmkeras.caption.train import train
        from mmkeras.config import TrainConfig
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        config = TrainConfig(smoke=True, decoder="attention", batch_size=16, out={str(tmp_path)!r})
        result = train(config, verbose=0, progress=False, strategy=strategy)
        history = read_history({str(tmp_path / "history.csv")!r})
        print(json.dumps({{"replicas": result["run"]["replicas"],
                          "global_batch_size": result["run"]["global_batch_size"],
                          "loss": history["loss"].tolist(), "metrics": result["metrics"]}}))
    """)
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                               timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert report["replicas"] == 2
    assert report["global_batch_size"] == 32, "16 per replica, 2 replicas"
    assert report["loss"][-1] < report["loss"][0], "the loss went down"
    assert report["metrics"]["n_images"] == 64 and 0.0 <= report["metrics"]["bleu_4"] <= 1.0
