"""jaxfrag: Monte Carlo tests of "feature compression is the root cause of adversarial fragility".

Run `python -m jaxfrag.sweep --d 7..64 --out runs/demo`; read its output with `jaxfrag.load`.
"""

from jaxfrag.store import load

__all__ = ["load"]
