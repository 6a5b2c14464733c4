"""The memory pool: prefork, recycling a child whose resident memory passed
``TDAUTO_MEMORY_CHILD_MAX_MB`` (512 MiB by default) once its task is done, so one large action
cannot keep a host's memory after it finished. (Celery checks the child's peak RSS after each
task and replaces the child; a running task is never interrupted for it. Subprocesses of an
action are bounded separately, by rlimits from the action's reservation.)"""

from tdauto.models import ResourceClass
from tdauto.resources.pools import PoolSpec

POOL = PoolSpec(
    name="memory",
    resource_class=ResourceClass.MEMORY,
    pool="prefork",
    concurrency_setting="concurrency_memory",
    max_memory_setting="memory_child_max_mb",
)
