"""redundancy: a small, fast library reproducing Dalvi et al. (2020),
*Analyzing Redundancy in Pretrained Transformer Models* (EMNLP 2020).

Data flows one way: tasks -> activations (cached on disk) -> analyses -> notebooks -> book.
"""

__version__ = "0.1.0"

from .errors import (CacheError, DataError, DataFormatError, ModelNotFoundError,  # noqa: F401
                     RedundancyError, SequenceTooLongError, UnknownTaskError)
from .data.tasks import TaskData, list_tasks, load_task, register_task, task_statistics  # noqa: F401
