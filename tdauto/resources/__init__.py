"""Resources: worker pools by resource class, load samples, the reservation ledger
(admission), the router (host queues by weight) and the resource manager (weights, lent
pools, dead hosts); see docs/resources.md."""
