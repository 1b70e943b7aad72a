"""lstmad's offline trainer: fits the LSTM forecaster and exports it to ONNX with its manifest.

Needs the ``[train]`` extra (TensorFlow, tf2onnx). May import streamer's pure modules
(``streamer.windows``, ``streamer.manifest``) and nothing else of the daemon.
"""
