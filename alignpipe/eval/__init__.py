"""Evaluation: generation, reward and gold scoring, knowledge probes, metrics and the report plot.

`metrics` is pure (stdlib + numpy); the other modules run models. Import the submodule you need:
this package imports nothing, so `import alignpipe.eval.metrics` never pulls in torch.
"""
