"""Layer: experiment (between methods and the front-ends eval, bench, audit, tune, which never import
one another). It owns what they share: the recipes (``recipes``), the scenario parser and the
reference models (``reference``), a model's evaluation and the headline (``evaluate``), and the
per-example audit's pools and scores (``pools``, ``scores``, ``engine``)."""
