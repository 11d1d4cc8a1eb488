"""The ``koble`` command line (:mod:`koble.cli.main`), one module per command group.

Importing this package makes the one process-wide setting the command needs before any
library loads: NumPy's transparent huge pages off (``NUMPY_MADVISE_HUGEPAGE=0``, unless the
user's environment sets it). NumPy asks the kernel for huge pages for every array of 4 MB
or more; where the kernel then compacts memory to find them (``defrag`` of ``madvise``, the
Debian default, on a machine whose memory is fragmented by other work), each new array
waits for it. The anonymity search and its command allocate such arrays by the hundred:
with huge pages the 5 M-row ``anonymise`` took 13.3 s (4.8 s of it in the kernel), without
them 8.6 s (1.4 s), on this project's 2-core machines (``benchmarks/README.md``). NumPy reads
the variable once, when it is first imported, so it is set here, at the command's edge, and
never by the library: a program that imports :mod:`koble` keeps its own choice.
"""

import os

#: NumPy's switch for ``madvise(MADV_HUGEPAGE)`` on its large arrays, and koble's default.
HUGEPAGE_VARIABLE = "NUMPY_MADVISE_HUGEPAGE"
HUGEPAGE_DEFAULT = "0"

os.environ.setdefault(HUGEPAGE_VARIABLE, HUGEPAGE_DEFAULT)
