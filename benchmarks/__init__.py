"""edgeseg benchmarks: the numbers a retail data team needs to pick a deployment path.

``python -m benchmarks`` (``make bench``) searches a model per dataset with the real factory,
then measures, in one run on one machine, the edge runtime against what a user would otherwise
deploy: FLAML's own ``predict``, the sklearn pipeline, the bare booster and skl2onnx's default
graph. Ratios and medians of interleaved rounds keep the comparison honest on a noisy, shared
machine. See ``benchmarks/README.md``.

Nothing runs at import time; the entry point is :func:`benchmarks._run.run_bench`.
"""
