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

import gc
import os

#: NumPy's switch for ``madvise(MADV_HUGEPAGE)`` on its large arrays, and koble's default.
HUGEPAGE_VARIABLE = "NUMPY_MADVISE_HUGEPAGE"
HUGEPAGE_DEFAULT = "0"

os.environ.setdefault(HUGEPAGE_VARIABLE, HUGEPAGE_DEFAULT)

#: Whether this process is the ``koble`` command itself: set by :func:`koble.cli.main.main`,
#: the entry of the console script and of ``python -m koble``, and never when a program calls
#: the commands (a test's ``CliRunner``), which keeps its process as it is.
COMMAND_PROCESS = False


def freeze_imports() -> None:
    """Move every object alive now to the garbage collector's permanent generation
    (:func:`gc.freeze`): for a command whose work follows its imports, just before the work.

    What is alive then, the modules, classes and functions imported and the parsed options,
    lives as long as the process; left in the collected generations, each full collection
    during the work and each one Python makes while it shuts down walks every one of those
    objects again. For ``koble run`` of the national benchmark job at 1 M persons (about
    100,000 such objects) that was about 0.2 s of CPU of the process's 2.4 s. Objects made
    by the work are collected as before. Only in the command's own process
    (:data:`COMMAND_PROCESS`), like the setting above: frozen objects are never collected,
    which a long-lived program calling koble must not be made to accept.
    """
    gc.freeze()
