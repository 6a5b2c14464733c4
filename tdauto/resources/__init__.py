"""Resources: worker pools by resource class (sampler, ledger, router and manager to come)."""
