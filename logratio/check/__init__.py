"""``logratio check``: validate the losses and their gradients on every installed backend.

For each backend and device found (NumPy, array-api-strict, PyTorch CPU/CUDA/MPS, JAX
CPU/GPU, CuPy; the shared registry :mod:`logratio.testing.backends`) and each of float32 and
float64, a few small random problems covering the options are solved with
:func:`logratio.log_ratio_loss_and_grad` (and, for a few, with Rank-N-Contrast and
y-aware InfoNCE) and compared with a float64 reference that enumerates every triplet or pair
with loops, with the framework's own automatic differentiation and
with central finite differences.  With ``--half``, float16 and bfloat16 inputs are checked
too.  Frameworks are imported only when the check runs: ``import logratio.check`` imports
none of them.

The modules, in reading order:

* :mod:`.problems`: the random problems and their float64 reference answers;
* :mod:`.comparison`: one backend and dtype against the references (tolerances, autodiff,
  finite differences) and :func:`run_check` over every backend;
* :mod:`.table`: the printed table, the JSON record and the summary line;
* :mod:`.cli`: the options and :func:`run`, the command itself.
"""

from .cli import add_arguments, main, run
from .comparison import BACKENDS as BACKENDS  # the tolerances and settings, re-exported
from .comparison import DTYPES as DTYPES
from .comparison import FD_STEP as FD_STEP
from .comparison import FD_TOLERANCE as FD_TOLERANCE
from .comparison import HALF_DTYPES as HALF_DTYPES
from .comparison import HALF_TOLERANCES as HALF_TOLERANCES
from .comparison import TOLERANCES as TOLERANCES
from .comparison import CheckRow, check_backend, reference_self_check, run_check
from .problems import CheckProblem, make_problems, with_reference
from .table import format_table

__all__ = [
    "CheckProblem",
    "CheckRow",
    "add_arguments",
    "check_backend",
    "format_table",
    "main",
    "make_problems",
    "reference_self_check",
    "run",
    "run_check",
    "with_reference",
]
