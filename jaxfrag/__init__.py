"""jaxfrag: Monte Carlo tests of "feature compression is the root cause of adversarial fragility".

Run `jaxfrag sweep --d 7..64 --out runs/demo`; read its output with `jaxfrag.load`, and what it
concludes with `jaxfrag verdicts runs/demo`.

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
5. reports -- what a run folder's rows say: reports.sweep, .grid, .mnist, .imagenet; the verdict
   ledger (reports.verdicts) and each run's report.html (reports.page).
6. command line -- cli: usage errors, parsers, option groups, the entry points' one skeleton.
7. entry points -- sweep, mnist, imagenet, verdicts, report (`python -m jaxfrag.<name>`), thin on cli;
   `jaxfrag` (`__main__`) dispatches to them as subcommands.

Where imports may stand inside a function is said once, in `jaxfrag.cli`.
"""

__version__ = "0.2.0"

from jaxfrag.store import load  # noqa: E402  (after __version__, which cli imports from here)

__all__ = ["load", "__version__"]
