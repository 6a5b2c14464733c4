"""The memory pool: prefork, recycling a child whose RSS passes 512 MiB after a task, so one
large action cannot keep a host's memory after it finished."""

from tdauto.models import ResourceClass
from tdauto.resources.pools import PoolSpec

POOL = PoolSpec(
    name="memory",
    resource_class=ResourceClass.MEMORY,
    pool="prefork",
    concurrency_setting="concurrency_memory",
    max_memory_per_child_kb=512 * 1024,
)
