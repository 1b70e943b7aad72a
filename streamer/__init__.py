"""lstmad's daemon: Kafka in, batched ONNX Runtime forecasts, anomaly/volatility alerts out.

Never imports TensorFlow or ``training``: it serves with the slim runtime dependencies only.
"""
