"""lstmad's benchmarks: inference speed, detection quality, forecast skill, Kafka throughput.

Not part of the installed package: run from a checkout with ``python -m bench <name>`` or
``make bench``. Every figure is printed beside its target and written to
``bench/results/latest.json``; nothing here is a timed unit test.
"""
