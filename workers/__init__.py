"""Worker pools, one module per resource class; ``tdauto worker POOL`` starts one."""
