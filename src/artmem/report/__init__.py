"""Figures and the self-contained HTML report of a memorability study (Cetinic et al. 2019).

`artmem.report` is this package and also the function that writes a report: calling it,
`artmem.report(collection, out, scores=...)`, calls `artmem.api.report` (see there).
"""

import sys
import types


class _CallablePackage(types.ModuleType):
    # Importing any `artmem.report.*` submodule rebinds the attribute `artmem.report` to this
    # package, so a plain function of that name could not survive; a callable package can.
    def __call__(self, *args, **kwargs):
        from artmem.api import report

        return report(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
