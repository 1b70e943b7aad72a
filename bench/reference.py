"""The reference architecture the issue benchmarks against, built in Keras and exported to ONNX.

LSTM(100, return_sequences) -> Dropout -> LSTM(100) -> Dropout -> Dense(1) over a window of 50
points of one feature: the classic LSTM next-point forecaster of the reference material, which
serves one window per ``model.predict`` call. Weights are untrained (speed does not depend on
them). The ONNX export uses tf2onnx at opset 17 with a dynamic batch axis and the same I/O
names as lstmad's model files (``window`` -> ``prediction``). Needs the ``[train]`` extra.
"""

from __future__ import annotations

import os
from typing import Any

WINDOW = 50
FEATURES = 1
UNITS = 100
OPSET = 17


def quiet_tensorflow(threads: int) -> Any:
    """Import TensorFlow with its logs silenced and ``threads`` intra/inter-op threads."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    return tf


def build_keras(seed: int = 0) -> Any:
    """The reference Keras model (untrained, deterministic initial weights for ``seed``)."""
    import keras

    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((WINDOW, FEATURES), name="window"),
            keras.layers.LSTM(UNITS, return_sequences=True),
            keras.layers.Dropout(0.2),
            keras.layers.LSTM(UNITS),
            keras.layers.Dropout(0.2),
            keras.layers.Dense(1),
        ]
    )


def export_onnx(model: Any) -> bytes:
    """Serialized ONNX graph of ``model`` (opset 17, input ``window`` [None, 50, 1])."""
    import tensorflow as tf
    import tf2onnx

    spec = (tf.TensorSpec((None, WINDOW, FEATURES), tf.float32, name="window"),)

    @tf.function(input_signature=spec)
    def serve(x: Any) -> dict[str, Any]:
        return {"prediction": model(x, training=False)}

    proto, _ = tf2onnx.convert.from_function(serve, input_signature=spec, opset=OPSET)
    return bytes(proto.SerializeToString())
