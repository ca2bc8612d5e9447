"""jaxfrag: Monte Carlo tests of "feature compression is the root cause of adversarial fragility".

Run `python -m jaxfrag.sweep --d 7..64 --out runs/demo`; read its output with `jaxfrag.load`.

The package in layers, lowest first; a module imports only from layers below its own, and
import-linter's contracts in pyproject.toml (run by the tests) keep it so:

1. maths and data -- pure functions of one trial, and the files everything writes through:
   linalg, padding, rmt, data, datasets, optimal, compression, attacks, plots; below them
   stats, store and config (the knobs, and the one table of the sweep's experiments).
2. models -- one network per module, for ONE network, vmapped outside: constructed, linear,
   relu, cnn (Flax), onnx_graph (an ONNX graph as a JAX function), imagenet, export.
3. experiments -- (key, config) -> rows, beside the paper's numbers they are compared with:
   base (what an experiment is), thm1, thm4, thm6, linear, relu, mnist, imagenet.
4. engine -- how cells are planned, run, stored and spread: stages (plan, run, merge) above
   grid, parallel and distributed.
5. reports -- what a run folder's rows say: reports.sweep, .grid, .mnist, .imagenet.
6. command line -- cli: usage errors, parsers, option groups, the entry points' one skeleton.
7. entry points -- sweep, mnist, imagenet (`python -m jaxfrag.<name>`), thin on cli.

Where imports may stand inside a function is said once, in `jaxfrag.cli`.
"""

from jaxfrag.store import load

__all__ = ["load"]
