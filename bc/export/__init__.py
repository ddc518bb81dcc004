"""Trained policies as one model file: ``python -m bc.export --run RUN --format onnx|torchscript``.

* :mod:`bc.export.exporter`: the command, writing the model file and its metadata;
* :mod:`bc.export.graph`: the exported graph (camera frames in, the decision out);
* :mod:`bc.export.runtime`: an exported file that acts like ``bc.policy.Policy``;
* :mod:`bc.export.bench`: batch-1 latency per runtime (``python -m bc.bench --runtimes``).
"""
