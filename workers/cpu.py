"""The cpu pool: prefork processes, one per core by default, for compute-bound actions."""

from tdauto.models import ResourceClass
from tdauto.resources.pools import PoolSpec

POOL = PoolSpec(
    name="cpu",
    resource_class=ResourceClass.CPU,
    pool="prefork",
    concurrency_setting="concurrency_cpu",
)
