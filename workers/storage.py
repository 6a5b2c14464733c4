"""The storage pool: threads, since backups, copies and clean-ups wait on I/O, not the CPU."""

from tdauto.models import ResourceClass
from tdauto.resources.pools import PoolSpec

POOL = PoolSpec(
    name="storage",
    resource_class=ResourceClass.STORAGE,
    pool="threads",
    concurrency_setting="concurrency_storage",
)
