"""lstmad's daemon: Kafka in, batched ONNX Runtime forecasts, anomaly/volatility alerts out.

Never imports TensorFlow or ``training``: it serves with the slim runtime dependencies only.
"""

import os

# ONNX Runtime's Linux wheels (1.32) carry Microsoft's 1DS telemetry, on by default: a thread
# that uploads usage events to mobile.events.data.microsoft.com, and a device id and event
# cache written under ~/.cache/Microsoft. A daemon on production hosts does neither. The
# variable must be set before ONNX Runtime initialises, and every process that loads it
# (daemon, inference child, trainer, bench) imports this package first. An operator who sets
# ORT_DISABLE_TELEMETRY=0 keeps ONNX Runtime's default.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
